"""Request and response bodies of the API (pydantic; they make the committed OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trialsynth.names import SAFE_NAME
from trialsynth.study_config import DP_SYNTHESIZERS, PrivacyBudget

Name = Field(pattern=SAFE_NAME.pattern, description="letters, digits, '_', '.', '-'; 1-64 characters")
Scalar = str | int | float | bool
Seed = Field(None, ge=0, le=2**32 - 1, description="random seed; default: the study config's")
JobKind = Literal["train", "generate", "impute", "simulate"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


def _types(annotation: Any) -> set:
    """Every type an annotation admits (unions and containers unpacked; Literal values are not types)."""
    found = {annotation} if isinstance(annotation, type) else set()
    for arg in get_args(annotation):
        found |= _types(arg)
    return found


class StrictBody(BaseModel):
    """A request body: unknown fields, NaN/Infinity and booleans given for numbers are refused (JSON
    numbers like 3.0 still count as integers, as in JSON Schema)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and bool not in _types(field.annotation):
                    raise ValueError(f"{name}: expected a number, got a boolean")
        return data


class ColumnSpec(StrictBody):
    """How one column is synthesized (models.synth.schema.ColumnSpec); omitted fields are inferred."""

    kind: Literal["continuous", "integer", "categorical", "ordinal", "date"]
    categories: list[Scalar] | None = Field(None, min_length=1, max_length=500,
                                             description="allowed values; for ordinal, lowest to highest")
    min_value: float | str | None = Field(None, description="lower bound (a date for kind date)")
    max_value: float | str | None = Field(None, description="upper bound (a date for kind date)")
    decimals: int | None = Field(None, ge=0, le=10)


class Privacy(StrictBody, PrivacyBudget):
    """The (epsilon, delta) differential-privacy budget one training spends (the study config's
    ``PrivacyBudget``): replace-one-subject neighbours, added to what the study's data version has spent
    and bounded by the study's cap."""


class TrainRequest(StrictBody):
    study: str = Name
    synthesizer: Literal["ctgan", "copula", *DP_SYNTHESIZERS] | None = Field(
        None, description=f"default: the study config's; {' and '.join(DP_SYNTHESIZERS)} are differentially private "
        "and need a privacy budget (here or in the study config)")
    seed: int | None = Seed
    columns: dict[str, ColumnSpec] = Field(default_factory=dict, max_length=200,
                                           description="per-column kind, categories and constraints (for a DP "
                                           "synthesizer: the public domain, never read off the data)")
    privacy: Privacy | None = Field(None, description="differential-privacy budget of this training; absent: the "
                                    "study config's (none: no guarantee, only with ctgan or copula)")


class GenerateRequest(StrictBody):
    model_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="a synthesizer model of this tenant")
    n: int = Field(ge=1, le=100_000, description="rows to generate")
    conditions: dict[str, Scalar] = Field(default_factory=dict, max_length=10,
                                          description="categorical column -> value every row must have, "
                                          "e.g. {\"ARM\": \"Placebo\"}")
    seed: int | None = Seed


class ImputeRequest(StrictBody):
    study: str = Name
    mechanism: Literal["MCAR", "MAR", "MNAR"] | None = Field(
        None, description="assumed mechanism, used to hide observed cells for the comparison")
    candidates: list[Literal["mean", "median", "knn", "mice", "missforest", "gain"]] | None = Field(
        None, min_length=1, max_length=6, description="imputers compared on held-out cells; the best is used")
    rate: float | None = Field(None, gt=0, lt=1, description="share of observed cells hidden for the comparison")
    repeats: int | None = Field(None, ge=1, le=10)
    seed: int | None = Seed


class ApproveRequest(StrictBody):
    why: str = Field(min_length=1, max_length=2000, description="why the model is approved (audit trail)")


class Job(BaseModel):
    job_id: str
    kind: JobKind
    status: JobStatus
    study: str | None
    dagster_run_id: str | None
    trace_id: str | None
    created_at: str
    updated_at: str
    request: dict[str, Any]
    result: dict[str, Any] | None = Field(description="outputs once succeeded, {error} once failed")
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[Job]


class Model(BaseModel):
    model_id: str
    name: str
    study: str
    synthesizer: str
    status: Literal["draft", "approved", "retired"]
    trained_at: str
    trained_by: str
    parameters: dict[str, Any]
    seed: int | None
    metrics: dict[str, Any] | None


class PowerCurvePoint(BaseModel):
    axis: Literal["n_per_arm", "effect"]
    x: float
    power: float
    method: Literal["analytic", "simulation"]
    mc_se: float | None


class PowerReport(BaseModel):
    inputs: dict[str, Any] = Field(description="every input, defaults included")
    method: Literal["analytic", "simulation"]
    seed: int
    recommended: dict[str, Any] = Field(description="N per arm analysed and to enrol, events (tte), power")
    curve: list[PowerCurvePoint]


class DropFile(BaseModel):
    name: str
    bytes: int
    sha256: str


class UploadFileSpec(StrictBody):
    name: str = Field(pattern=SAFE_NAME.pattern, description="file name in the drop (naming rules of multipart uploads)")
    bytes: int = Field(ge=0, description="size the client will PUT; checked when the upload is finished")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file; checked when the upload is finished")


class UploadRequest(StrictBody):
    study: str = Name
    drop_id: str | None = Field(None, pattern=SAFE_NAME.pattern, description="absent: the API names the drop")
    files: list[UploadFileSpec] = Field(min_length=1, max_length=200)


class UploadTarget(DropFile):
    url: str = Field(description="presigned URL: PUT the file's bytes there before it expires")
    method: Literal["PUT"] = "PUT"


class DropUpload(BaseModel):
    upload_id: str
    study: str
    drop_id: str
    expires_at: str
    files: list[UploadTarget]
    finish: str = Field(description="POST here (with an Idempotency-Key) once every file is PUT: the drop lands")


class Drop(BaseModel):
    drop_id: str
    study: str
    files: list[DropFile]
    landing: str
    ready: bool


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
