"""Per-study analytics configuration: ``data/studies/<study>.yaml`` (all keys optional).

::

    imputation:
      candidates: [mean, knn, mice, missforest, gain]   # compared on held-out cells, best one wins
      mechanism: MCAR          # how observed cells are hidden for the comparison
      rate: 0.2
      repeats: 3
      params: {gain: {iterations: 3000}}                 # per-imputer parameters
      fill: best               # best: the benchmark's winner fills the gaps | knn: "closest imputation",
                               # KNN from the most similar subject-visits with every donor recorded
    synthesis:
      synthesizer: ctgan       # ctgan | copula (no guarantee) | dp_copula | mst (differentially private)
      params: {epochs: 150}
      n: 500                   # rows of the synthetic cohort
      conditions: {}           # e.g. {ARM: Placebo}
      allow_unapproved: false  # true lets a draft model generate (recorded in lineage)
      holdout: 0.2             # share of real subjects kept out of training for the evidence pack
      privacy:                 # omit (or null) for no guarantee, labelled "none"; needs dp_copula or mst
        epsilon: 1.0           # (epsilon, delta)-DP spent by one training, replace-one-subject neighbours
        delta: 1.0e-6
        cap: {epsilon: 3.0, delta: 1.0e-5}   # cumulative per study data version (default: one training)
        estimate_domain: false # true: columns without public bounds/categories get a DP estimate
      columns:                 # public domain (protocol, CDISC CT): never the raw min/max or category set
        AGE: {kind: integer, min_value: 18, max_value: 90}
        SEX: {kind: categorical, categories: [F, M]}
    evidence:
      target: auto             # utility target(s), train-on-synthetic / test-on-real: a column, a list,
                               # auto (the column the others predict best; never the randomized arm), or null
      closest_k: 3             # closest real records listed per synthetic row (0: none)
      epsilon_curve: false     # true: the pack adds fidelity, utility and MIA AUC of the DP synthesizers
                               # at epsilon 0.5, 1, 2, 5, 10 and without DP (22 extra fits and scorings)
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trialsynth.names import validate_name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImputationConfig(_Strict):
    candidates: list[str] = Field(default_factory=lambda: ["mean", "knn", "mice", "gain"])
    mechanism: Literal["MCAR", "MAR", "MNAR"] = "MCAR"
    rate: float = Field(0.2, gt=0, lt=1)
    repeats: int = Field(3, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"gain": {"iterations": 3000}})
    fill: Literal["best", "knn"] = "best"  # knn: closest imputation with a donor audit, whatever wins


DP_SYNTHESIZERS = ("dp_copula", "mst")
"""Synthesizers with a differential-privacy guarantee (they need ``synthesis.privacy``)."""


class PrivacyBudget(_Strict):
    """An (epsilon, delta) differential-privacy budget."""

    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(1e-6, gt=0, le=1e-3)

    def label(self) -> str:
        return f"(epsilon={self.epsilon:g}, delta={self.delta:g})-DP"


class PrivacyConfig(PrivacyBudget):
    """The budget one training spends, the study's cap, and where the column domain may come from."""

    cap: PrivacyBudget | None = None  # cumulative per study data version; None: this budget (one model)
    estimate_domain: bool = False  # columns without public bounds/categories get a DP estimate

    @property
    def cap_budget(self) -> PrivacyBudget:
        return self.cap or PrivacyBudget(epsilon=self.epsilon, delta=self.delta)


class ColumnDomainConfig(_Strict):
    """Public domain of one synthesized column (protocol, controlled terminology), never read off the data."""

    kind: Literal["continuous", "integer", "categorical", "ordinal"] | None = None
    min_value: float | None = None
    max_value: float | None = None
    categories: list[Any] | None = None
    decimals: int | None = Field(None, ge=0, le=15)


class SynthesisConfig(_Strict):
    synthesizer: Literal["ctgan", "copula", "dp_copula", "mst"] = "ctgan"
    params: dict[str, Any] = Field(default_factory=dict)
    n: int = Field(500, gt=0)
    conditions: dict[str, Any] = Field(default_factory=dict)
    allow_unapproved: bool = False
    holdout: float = Field(0.2, gt=0, lt=0.9)
    privacy: PrivacyConfig | None = None  # None: no privacy guarantee ("none")
    columns: dict[str, ColumnDomainConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _privacy_matches_synthesizer(self) -> SynthesisConfig:
        if self.privacy is not None and self.synthesizer not in DP_SYNTHESIZERS:
            raise ValueError(f"privacy: {self.synthesizer} gives no differential-privacy guarantee; "
                             f"use synthesizer {' or '.join(DP_SYNTHESIZERS)}, or drop privacy")
        if self.privacy is None and self.synthesizer in DP_SYNTHESIZERS:
            raise ValueError(f"synthesizer: {self.synthesizer} needs privacy: {{epsilon: ..., delta: ...}}")
        if self.privacy is not None:
            cap = self.privacy.cap_budget
            if cap.epsilon < self.privacy.epsilon or cap.delta < self.privacy.delta:
                raise ValueError(f"privacy.cap {cap.label()} is below the budget of one training "
                                 f"{self.privacy.label()}")
        return self

    @property
    def privacy_label(self) -> str:
        """The guarantee in words: "(epsilon=1, delta=1e-06)-DP" or "none"."""
        return "none" if self.privacy is None else self.privacy.label()


class EvidenceConfig(_Strict):
    target: str | list[str] | None = "auto"  # "auto": chosen from the data (models.evidence.choose_utility_targets)
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    closest_k: int = Field(3, ge=0, le=50)
    epsilon_curve: bool = False  # models.evidence.epsilon_curve in the pack: costs a fit and a scoring per point


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
