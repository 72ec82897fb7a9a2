"""``trialsynth power``: sample size per arm and a PNG power curve for one two-arm design.

Examples::

    trialsynth power --endpoint continuous --effect 0.5 --alpha 0.05 --power 0.8 --ratio 1 --dropout 0.15
    trialsynth power --endpoint binary --p-control 0.5 --p-treatment 0.65 --method arcsine
    trialsynth power --endpoint tte --hr 0.7 --control-median 12 --accrual 12 --follow-up 12

``--effect`` is the mean difference (continuous, in units of ``--sd``), the risk difference
p_treatment - p_control (binary) or the hazard ratio (tte).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from models.design.analytic import BinaryDesign, ContinuousDesign, Design, SampleSize, TimeToEventDesign
from models.design.curves import power_curves
from models.design.plot import plot_power_curves
from models.design.simulate import simulate_power

_TESTS = {
    "continuous": {
        "ttest": "two-sample t-test, noncentral t",
        "ancova": "ANCOVA on baseline, noncentral t",
    },
    "binary": {"pooled": "two proportions, pooled-variance z", "arcsine": "two proportions, arcsine"},
    "tte": {"logrank": "log-rank, Schoenfeld events, exponential survival"},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "power",
        help="sample size per arm and power curve (continuous, binary or time-to-event endpoint)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--endpoint", required=True, choices=["continuous", "binary", "tte"])
    p.add_argument("--effect", type=float, help="mean difference | risk difference | hazard ratio")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--ratio", type=float, default=1.0, help="allocation n_treatment / n_control (default 1)")
    p.add_argument(
        "--dropout", type=float, default=0.0, help="dropout fraction; enrol n / (1 - d) (default 0)"
    )
    p.add_argument("--sided", type=int, choices=[1, 2], default=2, help="one- or two-sided test (default 2)")
    g = p.add_argument_group("continuous")
    g.add_argument("--sd", type=float, default=1.0, help="outcome SD (default 1: effect is Cohen's d)")
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
    g.add_argument("--control-median", type=float, default=12.0, help="control median survival (default 12)")
    g.add_argument("--accrual", type=float, default=12.0, help="uniform accrual period (default 12)")
    g.add_argument("--follow-up", type=float, default=12.0, help="follow-up after last entry (default 12)")
    g = p.add_argument_group("simulation and output")
    g.add_argument(
        "--simulations", type=int, default=1000, help="virtual trials per simulated point, 0 = none"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--out", type=Path, help="PNG path (default power_<endpoint>.png in the current directory)"
    )
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


def build_design(args: argparse.Namespace) -> Design:
    common = {"alpha": args.alpha, "sided": args.sided, "ratio": args.ratio, "dropout": args.dropout}
    if args.endpoint == "continuous":
        if args.effect is None:
            raise ValueError("--effect is required for --endpoint continuous")
        return ContinuousDesign(
            effect=args.effect,
            sd=args.sd,
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
        control_median=args.control_median,
        accrual=args.accrual,
        follow_up=args.follow_up,
        **common,
    )


def describe(design: Design, size: SampleSize) -> list[str]:
    """Human-readable summary lines of a sample-size result."""
    d = design
    test = _TESTS[d.endpoint][getattr(d, "analysis", None) or getattr(d, "method", None) or "logrank"]
    lines = [
        f"endpoint: {d.endpoint} ({test})",
        f"effect {d.effect:g}, alpha {d.alpha:g} {'two' if d.sided == 2 else 'one'}-sided, "
        f"target power {size.target_power:g}, ratio {d.ratio:g}:1 (treatment:control), dropout {d.dropout:g}",
        f"N per arm: control {size.n_control}, treatment {size.n_treatment}; total {size.total_n} "
        f"(analytic power {size.power:.3f})",
        f"N per arm to enrol (n / (1 - {d.dropout:g})): control {size.enrol_control}, "
        f"treatment {size.enrol_treatment}; total {size.total_enrol}",
    ]
    if size.events is not None:
        lines.insert(2, f"events required: {size.events}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.simulations < 0:
        raise ValueError(f"--simulations must be >= 0, got {args.simulations}")
    design = build_design(args)
    size = design.sample_size(args.power)
    for line in describe(design, size):
        print(line)
    if args.simulations:
        sim = simulate_power(
            design, size.enrol_control, size.enrol_treatment, n_trials=args.simulations, seed=args.seed
        )
        print(
            f"simulated power at enrolment: {sim.power:.3f} (MC SE {sim.mc_se:.3f}, "
            f"{sim.n_trials} trials, seed {sim.seed})"
        )
    curves = power_curves(design, size, n_trials=args.simulations, seed=args.seed)
    out = args.out or Path.cwd() / f"power_{design.endpoint}.png"
    plot_power_curves(
        curves,
        out,
        target_power=size.target_power,
        enrol_control=size.enrol_control,
        effect=design.effect,
        title=f"power curves: {design.endpoint}, effect {design.effect:g}",
    )
    print(f"power curve: {out}")
    return 0
