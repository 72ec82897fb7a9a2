"""``trialsynth power``: N per arm for one two-arm design, every assumption it used, a quick simulation.

Examples::

    trialsynth power --endpoint continuous --effect 0.5 --alpha 0.05 --power 0.8 --ratio 1 --dropout 0.15
    trialsynth power --endpoint binary --p-control 0.5 --p-treatment 0.65 --method arcsine
    trialsynth power --endpoint tte --hr 0.7 --control-median 12 --accrual 12 --follow-up 12
    trialsynth power --endpoint tte --hr 0.7 --plot curves.png      # also draw power vs N and vs effect

``--effect`` is the mean difference (continuous, in units of ``--sd``), the risk difference
p_treatment - p_control (binary) or the hazard ratio (tte). Two numbers per arm are printed, always
labelled: the *analysable* N (subjects the test needs) and the N *to enrol* (analysable / (1 -
dropout), rounded up), the same labels as the Dagster asset ``power_curves``. Nothing is written
to disk unless ``--plot PATH`` asks for a PNG.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from models.design.analytic import (
    ANALYSABLE_LABEL,
    ENROL_LABEL,
    BinaryDesign,
    ContinuousDesign,
    Design,
    SampleSize,
    TimeToEventDesign,
)

DEFAULT_SIMULATIONS = 1000
"""Virtual trials simulated at the recommended enrolment: under 0.1 s for every endpoint, so a call
stays well under a second (the plot's curves simulate 14 more points and are drawn only on request)."""

_TESTS = {
    "continuous": {
        "ttest": "two-sample t-test, noncentral t",
        "ancova": "ANCOVA on baseline, noncentral t",
    },
    "binary": {"pooled": "two proportions, pooled-variance z", "arcsine": "two proportions, arcsine"},
    "tte": {"logrank": "log-rank, Schoenfeld events, exponential survival"},
}
# Options whose defaults are assumptions worth flagging when the user did not give them.
_DEFAULTS = {"sd": 1.0, "control_median": 12.0, "accrual": 12.0, "follow_up": 12.0, "dropout": 0.0}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "power",
        help="N per arm (analysable and to enrol) for a continuous, binary or time-to-event endpoint",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--endpoint", required=True, choices=["continuous", "binary", "tte"])
    p.add_argument("--effect", type=float, help="mean difference | risk difference | hazard ratio")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--ratio", type=float, default=1.0, help="allocation n_treatment / n_control (default 1)")
    p.add_argument(
        "--dropout", type=float, help="share of subjects not analysable; enrol n / (1 - d) (default 0)"
    )
    p.add_argument("--sided", type=int, choices=[1, 2], default=2, help="one- or two-sided test (default 2)")
    g = p.add_argument_group("continuous")
    g.add_argument("--sd", type=float, help="outcome SD (default 1: effect is Cohen's d)")
    g.add_argument("--analysis", choices=["ttest", "ancova"], default="ttest")
    g.add_argument(
        "--baseline-correlation", type=float, default=0.0, help="outcome-baseline correlation (ANCOVA)"
    )
    g = p.add_argument_group("binary")
    g.add_argument("--p-control", type=float, help="response proportion, control arm")
    g.add_argument("--p-treatment", type=float, help="response proportion, treatment arm (or give --effect)")
    g.add_argument("--method", choices=["pooled", "arcsine"], default="pooled")
    g.add_argument("--continuity-correction", action="store_true", help="Yates / Fleiss correction (pooled)")
    g = p.add_argument_group("time to event (times in any one unit)")
    g.add_argument("--hr", type=float, help="hazard ratio treatment / control (or give --effect)")
    g.add_argument("--control-median", type=float, help="control median time to event (default 12)")
    g.add_argument("--accrual", type=float, help="uniform accrual period (default 12)")
    g.add_argument("--follow-up", type=float, help="follow-up after the last subject enters (default 12)")
    g = p.add_argument_group("simulation and output")
    g.add_argument(
        "--simulations", type=int, default=DEFAULT_SIMULATIONS,
        help=f"virtual trials simulated at the recommended enrolment, 0 = analytic only (default "
             f"{DEFAULT_SIMULATIONS}); with --plot also per simulated curve point",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG of power vs N and vs effect to PATH")
    p.set_defaults(func=run)


def _one_of(
    args: argparse.Namespace, option: str, value: float | None, from_effect: Callable[[float], float]
) -> float:
    """The effect given either as ``option`` or as ``--effect`` (converted), not both and not neither."""
    if value is not None and args.effect is not None:
        raise ValueError(f"give {option} or --effect, not both")
    if value is None and args.effect is None:
        raise ValueError(f"{option} (or --effect) is required for --endpoint {args.endpoint}")
    return value if value is not None else from_effect(args.effect)


def _given(args: argparse.Namespace, name: str) -> float:
    value = getattr(args, name)
    return _DEFAULTS[name] if value is None else value


def build_design(args: argparse.Namespace) -> Design:
    common = {"alpha": args.alpha, "sided": args.sided, "ratio": args.ratio, "dropout": _given(args, "dropout")}
    if args.endpoint == "continuous":
        if args.effect is None:
            raise ValueError("--effect is required for --endpoint continuous")
        return ContinuousDesign(
            effect=args.effect,
            sd=_given(args, "sd"),
            analysis=args.analysis,
            baseline_correlation=args.baseline_correlation,
            **common,
        )
    if args.endpoint == "binary":
        if args.p_control is None:
            raise ValueError("--p-control is required for --endpoint binary")
        return BinaryDesign(
            p_control=args.p_control,
            p_treatment=_one_of(args, "--p-treatment", args.p_treatment, lambda e: args.p_control + e),
            method=args.method,
            continuity_correction=args.continuity_correction,
            **common,
        )
    return TimeToEventDesign(
        hr=_one_of(args, "--hr", args.hr, float),
        control_median=_given(args, "control_median"),
        accrual=_given(args, "accrual"),
        follow_up=_given(args, "follow_up"),
        **common,
    )


def assumptions(design: Design, defaulted: set[str] = frozenset()) -> list[str]:
    """Every input the result rests on, one per line; ``defaulted`` names those left at their default."""
    d = design

    def mark(name: str) -> str:
        return " (default)" if name in defaulted else ""

    lines = [
        f"alpha {d.alpha:g} {'two' if d.sided == 2 else 'one'}-sided, allocation {d.ratio:g}:1 "
        f"(treatment:control)",
    ]
    if isinstance(d, ContinuousDesign):
        lines += [f"mean difference {d.effect:g} (treatment - control), outcome SD {d.sd:g}{mark('sd')}",
                  f"analysis {d.analysis}"
                  + (f", outcome-baseline correlation {d.baseline_correlation:g}" if d.analysis == "ancova" else "")]
    elif isinstance(d, BinaryDesign):
        lines += [f"response proportion control {d.p_control:g}, treatment {d.p_treatment:g} "
                  f"(risk difference {d.effect:g})",
                  f"method {d.method}" + (", continuity correction" if d.continuity_correction else "")]
    else:
        lines += [
            f"hazard ratio {d.hr:g} (treatment / control), exponential survival",
            f"control median {d.control_median:g} time units{mark('control_median')} "
            f"(hazard {d.hazard_control:.4g} per unit)",
            f"accrual {d.accrual:g}{mark('accrual')}, uniform entry",
            f"follow-up {d.follow_up:g}{mark('follow_up')} after the last subject enters: analysis at "
            f"{d.accrual + d.follow_up:g}",
            f"P(event by the analysis): control {d.event_probability(d.hazard_control):.3f}, "
            f"treatment {d.event_probability(d.hazard_treatment):.3f}",
        ]
    loss = ("; simulated as exponential loss to follow-up, this share lost by the end of the study "
            "without an event") if isinstance(d, TimeToEventDesign) else ""
    lines.append(f"dropout {d.dropout:g}{mark('dropout')}: enrol analysable / (1 - {d.dropout:g}), rounded up{loss}")
    return lines


def describe(design: Design, size: SampleSize, defaulted: set[str] = frozenset()) -> list[str]:
    """Human-readable summary lines of a sample-size result: test, assumptions, both N per arm."""
    d = design
    test = _TESTS[d.endpoint][getattr(d, "analysis", None) or getattr(d, "method", None) or "logrank"]
    lines = [f"endpoint: {d.endpoint} ({test}), target power {size.target_power:g}", "assumptions:"]
    lines += [f"  {line}" for line in assumptions(d, defaulted)]
    if size.events is not None:
        lines.append(f"events required: {size.events} (Schoenfeld)")
    lines += [
        f"{ANALYSABLE_LABEL}: control {size.n_control}, treatment {size.n_treatment} (total {size.total_n}); "
        f"analytic power {size.power:.3f}",
        f"{ENROL_LABEL}: control {size.enrol_control}, treatment {size.enrol_treatment} "
        f"(total {size.total_enrol})",
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    if args.simulations < 0:
        raise ValueError(f"--simulations must be >= 0, got {args.simulations}")
    design = build_design(args)
    size = design.sample_size(args.power)
    defaulted = {name for name in _DEFAULTS if getattr(args, name) is None}
    for line in describe(design, size, defaulted):
        print(line)
    if args.simulations:
        from models.design.simulate import simulate_power

        sim = simulate_power(
            design, size.enrol_control, size.enrol_treatment, n_trials=args.simulations, seed=args.seed
        )
        half = 1.96 * sim.mc_se
        print(
            f"simulated power with the N to enrol (dropout simulated): {sim.power:.3f} "
            f"(95% MC interval {max(sim.power - half, 0):.3f}-{min(sim.power + half, 1):.3f}, "
            f"{sim.n_trials} trials, seed {sim.seed})"
        )
    if args.plot is not None:
        from models.design.curves import power_curves
        from models.design.plot import plot_power_curves

        curves = power_curves(design, size, n_trials=args.simulations, seed=args.seed)
        plot_power_curves(curves, args.plot, target_power=size.target_power, enrol_control=size.enrol_control,
                          effect=design.effect, title=f"power curves: {design.endpoint}, effect {design.effect:g}")
        print(f"power curve: {args.plot}")
    return 0
