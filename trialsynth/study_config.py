"""Per-study analytics configuration: ``data/studies/<study>.yaml`` (all keys optional).

::

    imputation:
      candidates: [mean, knn, mice, missforest, gain]   # compared on held-out cells, best one wins
      mechanism: MCAR          # how observed cells are hidden for the comparison
      rate: 0.2
      repeats: 3
      params: {gain: {iterations: 3000}}                 # per-imputer parameters
    synthesis:
      synthesizer: ctgan       # ctgan | copula
      params: {epochs: 150}
      n: 500                   # rows of the synthetic cohort
      conditions: {}           # e.g. {ARM: Placebo}
      allow_unapproved: false  # true lets a draft model generate (recorded in lineage)
      holdout: 0.2             # share of real subjects kept out of training for the evidence pack
    evidence:
      target: ARM              # utility: train-on-synthetic / test-on-real target
      thresholds: {detection_auc: {warn: 0.75, fail: 0.9}}
    seed: 7
    qtl:                       # quality tolerance limits (RBQM), study-wide
      - {name: discontinuation, kri: discontinuation_rate, limit: 0.25, direction: above}

Unknown keys are errors that name the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trialsynth.names import validate_name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImputationConfig(_Strict):
    candidates: list[str] = Field(default_factory=lambda: ["mean", "knn", "mice", "gain"])
    mechanism: Literal["MCAR", "MAR", "MNAR"] = "MCAR"
    rate: float = Field(0.2, gt=0, lt=1)
    repeats: int = Field(3, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"gain": {"iterations": 3000}})


class SynthesisConfig(_Strict):
    synthesizer: Literal["ctgan", "copula"] = "ctgan"
    params: dict[str, Any] = Field(default_factory=dict)
    n: int = Field(500, gt=0)
    conditions: dict[str, Any] = Field(default_factory=dict)
    allow_unapproved: bool = False
    holdout: float = Field(0.2, gt=0, lt=0.9)


class EvidenceConfig(_Strict):
    target: str | None = "ARM"
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)


class QTLConfig(_Strict):
    """A study-level quality tolerance limit on a KRI's study-wide rate."""

    name: str
    kri: str  # a KRI name of mart_kri_qtl, e.g. discontinuation_rate
    limit: float
    direction: Literal["above", "below"] = "above"  # breached when the rate is above / below the limit


class StudyConfig(_Strict):
    qtl: list[QTLConfig] = Field(default_factory=list)
    imputation: ImputationConfig = ImputationConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    seed: int = 7


def load_study_config(studies_dir: Path, study: str) -> tuple[StudyConfig, Path | None]:
    """The study's config (defaults when it has no file) and the file it came from."""
    path = studies_dir / f"{validate_name(study, 'study')}.yaml"
    if not path.exists():
        return StudyConfig(), None
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return StudyConfig.model_validate(raw), path
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from exc
