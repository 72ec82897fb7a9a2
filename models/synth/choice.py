"""Which synthesizer a study gets at its size: the GAN only where it is not known to fail.

Measured on the demo generator's data (``benchmarks/bench_gan_size.py`` ->
``benchmarks/results/gan_size.md``): CTGAN at its defaults was detected by the evidence pack's
classifier with ROC AUC 0.94-0.99 (fail above 0.85) at every size measured, 96 to 6,341 training
rows, and its conditional cohorts were biased (SEX=F mean weight off by 0.6-1.8 real SDs), while
the Gaussian copula scored 0.50-0.59. So a study that does not name its synthesizer gets the
copula below :data:`GAN_MIN_ROWS` training rows; a study that names CTGAN gets it, with the reason
it is likely to fail.
"""

from __future__ import annotations

from typing import NamedTuple

GAN_MIN_ROWS = 6_400
"""Training rows below which CTGAN at its defaults is known (measured) to fail the evidence."""
_MEASURED = ("CTGAN at its defaults was detected with ROC AUC 0.94-0.99 (evidence fail > 0.85) at every size "
             "measured on the demo generator's data, 96 to 6,341 training rows (benchmarks/results/gan_size.md)")


class SynthesizerChoice(NamedTuple):
    """The synthesizer to train and why (a sentence for logs and the evidence pack)."""

    name: str
    reason: str


def choose_synthesizer(requested: str, n_rows: int, *, explicit: bool) -> SynthesizerChoice:
    """The synthesizer for a training table of ``n_rows`` rows.

    ``requested`` is the study config's synthesizer and ``explicit`` whether the study (or the run)
    set it or its parameters, rather than taking the default. Only a default CTGAN below
    :data:`GAN_MIN_ROWS` rows is replaced, by the Gaussian copula; every explicit choice stands.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    if requested != "ctgan":
        return SynthesizerChoice(requested, f"{requested}: {'set by the study config' if explicit else 'the default'}")
    if n_rows >= GAN_MIN_ROWS:
        return SynthesizerChoice("ctgan", f"ctgan: {n_rows} training rows, at least the {GAN_MIN_ROWS} below which "
                                          "it is known to fail")
    if explicit:
        return SynthesizerChoice("ctgan", f"ctgan as the study config sets, although {n_rows} training rows is "
                                          f"below {GAN_MIN_ROWS}: {_MEASURED}; expect the evidence to fail")
    return SynthesizerChoice("copula", f"Gaussian copula instead of the default ctgan: {n_rows} training rows is "
                                       f"below {GAN_MIN_ROWS}, and {_MEASURED}; the copula scored 0.50-0.59")
