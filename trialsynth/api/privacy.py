"""The training config of ``POST /synth/v1/train`` and its differential-privacy budget, checked before
a run is launched.

- :func:`training_config`: the study config the run will use, made by the synthesis asset's own
  ``SynthesisRunConfig.apply`` (so the API and the run cannot disagree); what it refuses (privacy with
  a synthesizer that gives no guarantee, a DP synthesizer without a budget) is a 422 naming the field.
- :func:`check_privacy_budget`: the registry's privacy account of the study's data version (the one
  its latest DP spend was accounted on, whatever the seed): a request whose budget exceeds the
  study's cap, or what is left of it, is refused with 409 ``privacy-budget-exceeded`` naming the cap,
  the spent and the remaining budget (``cap``, ``spent``, ``remaining`` members of the problem). The
  run checks again against the data version it trains on (a new drop starts a new account there) and
  fails naming the same numbers; a request that only reproduces a registered model is let through,
  since the run reuses that model and spends nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from assets.synthesis import SynthesisRunConfig
from trialsynth.api.problems import ProblemError, field_error, invalid
from trialsynth.api.schemas import TrainRequest
from trialsynth.registry import ModelRecord, ModelRegistry
from trialsynth.study_config import DP_SYNTHESIZERS, PrivacyBudget, StudyConfig

_FIELDS = {"privacy": "body.privacy", "privacy.cap": "body.privacy", "synthesizer": "body.synthesizer"}


def synthesis_run_config(body: TrainRequest) -> dict[str, Any]:
    """The ``synthesizer_model`` op's config (``SynthesisRunConfig``) for a train request."""
    config = body.model_dump(mode="json", include={"synthesizer", "seed", "columns", "privacy"}, exclude_none=True)
    return {k: v for k, v in config.items() if v or k == "seed"}


def training_config(study_cfg: StudyConfig, body: TrainRequest) -> StudyConfig:
    """``study_cfg`` with the request applied as the run will apply it; 422 naming the field otherwise."""
    try:
        return SynthesisRunConfig(**synthesis_run_config(body)).apply(study_cfg)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
    except ValueError as exc:
        message = str(exc)
    name = message.partition(":")[0].split(" ")[0]
    raise invalid(_FIELDS.get(name, "body"), message) from None


def _budget(epsilon: float, delta: float) -> dict[str, float]:
    return {"epsilon": round(max(epsilon, 0.0), 12), "delta": max(delta, 0.0)}


def check_privacy_budget(registry: ModelRegistry, tenant: str, study: str, study_cfg: StudyConfig,
                         body: TrainRequest) -> None:
    """409 naming cap, spent and remaining when the request's DP training would exceed the study's cap
    (the study config's ``synthesis.privacy.cap``; without one, a data version allows one training)."""
    synthesis = study_cfg.synthesis
    privacy = body.privacy or synthesis.privacy
    synthesizer = body.synthesizer or synthesis.synthesizer
    if privacy is None or synthesizer not in DP_SYNTHESIZERS:
        return  # nothing to spend, or a 422 from training_config
    cap = synthesis.privacy.cap_budget if synthesis.privacy else privacy
    seed = study_cfg.seed if body.seed is None else body.seed
    account = f"{tenant}/{study}"
    models = [m for m in registry.list(kind="synthesizer")  # the DP models: only they spend (and see all columns)
              if m.name.startswith(f"{account}/") and m.seed == seed and m.parameters.get("privacy")]
    version = registry.latest_data_version(account)  # whatever seed spent on it
    spent_eps, spent_delta, n = registry.privacy_spent(account, version) if version else (0.0, 0.0, 0)
    remaining = _budget(cap.epsilon - spent_eps, cap.delta - spent_delta)
    over = [name for name in ("epsilon", "delta") if getattr(privacy, name) > remaining[name] + 1e-12]
    if not over or _reproduces(models, synthesizer, privacy):
        return
    detail = (f"privacy: training at epsilon={privacy.epsilon:g}, delta={privacy.delta:g} would exceed the study's "
              f"privacy cap (epsilon={cap.epsilon:g}, delta={cap.delta:g}): spent epsilon={spent_eps:g}, "
              f"delta={spent_delta:g} by {n} model(s) on its data version; remaining epsilon={remaining['epsilon']:g}, "
              f"delta={remaining['delta']:g}. Lower the budget, generate from a trained model, or raise "
              "synthesis.privacy.cap in the study config")
    raise ProblemError(409, "privacy-budget-exceeded", "Privacy budget exceeded", detail,
                       errors=[field_error(f"body.privacy.{name}", f"above the remaining {remaining[name]:g}")
                               for name in over],
                       cap=_budget(cap.epsilon, cap.delta), spent=_budget(spent_eps, spent_delta) | {"models": n},
                       remaining=remaining)


def _reproduces(models: list[ModelRecord], synthesizer: str, privacy: PrivacyBudget) -> bool:
    """A registered, unretired model on the latest training table of this seed with the same synthesizer and
    budget: the run reuses it and spends nothing (if its other parameters differ, the run refuses the
    training itself)."""
    table = models[-1].training_data_sha256 if models else None
    return any(m.training_data_sha256 == table and m.status != "retired" and m.name.rsplit("/", 1)[1] == synthesizer
               and {k: (m.parameters.get("privacy") or {}).get(k) for k in ("epsilon", "delta")}
               == {"epsilon": privacy.epsilon, "delta": privacy.delta} for m in models)
