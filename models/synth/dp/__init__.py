"""Differentially private synthesizers: an (epsilon, delta) guarantee for the artifact and every row
sampled from it, with the budget accounted in zCDP (:mod:`models.synth.dp.accountant`).

>>> from models.synth.dp import DPGaussianCopulaSynthesizer, MSTSynthesizer
>>> model = MSTSynthesizer(epsilon=1.0, delta=1e-6, columns={"AGE": {"min_value": 18, "max_value": 90},
...                        "SEX": {"categories": ["F", "M"]}}, random_state=0).fit(df[["AGE", "SEX"]])
>>> model.privacy_["epsilon"], model.sample(100, conditions={"SEX": "F"})
"""

from models.synth.dp.accountant import (
    ZCDPAccountant,
    epsilon_from_rho,
    gaussian_sigma,
    rho_from_epsilon_delta,
)
from models.synth.dp.base import DPSynthesizer
from models.synth.dp.copula import DPGaussianCopulaSynthesizer
from models.synth.dp.mst import MSTSynthesizer

MECHANISMS: dict[str, type[DPSynthesizer]] = {"dp_copula": DPGaussianCopulaSynthesizer, "mst": MSTSynthesizer}
"""The DP synthesizers by the name a study config's ``synthesis.synthesizer`` gives them."""

__all__ = [
    "MECHANISMS",
    "DPGaussianCopulaSynthesizer",
    "DPSynthesizer",
    "MSTSynthesizer",
    "ZCDPAccountant",
    "epsilon_from_rho",
    "gaussian_sigma",
    "rho_from_epsilon_delta",
]
