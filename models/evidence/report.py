"""Self-contained HTML report of an evidence pack.

Everything is inline: figures are PNGs embedded as base64 ``data:`` URIs and styles sit in the
page, with no external URL at all, because the report shows patient-level distributions and must
open offline inside a closed network.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from models.evidence.encoding import ENCODING_DESCRIPTION, distance_encoder, subsample
from models.evidence.metrics import correlation_matrix
from models.evidence.thresholds import GROUPS, metric_info

if TYPE_CHECKING:
    from models.evidence.pack import EvidencePack, PlotData

COLOURS = {"real": "#1f77b4", "imputed": "#2ca02c", "synthetic": "#d62728", "holdout": "#7f7f7f"}
LEVEL_COLOURS = {"pass": "#d4edda", "warn": "#fff3cd", "fail": "#f8d7da"}
_MAX_CATEGORIES_DRAWN = 20
_MAX_POINTS_DRAWN = 2000
_CLOSEST_PAIRS_SHOWN = 10

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 0.9em; }
td.num { text-align: right; font-family: monospace; }
.badge { padding: 4px 12px; font-weight: bold; text-transform: uppercase; }
.figures img { margin: 4px; border: 1px solid #eee; }
.verdict { border: 2px solid #999; padding: 0.5em 1em; max-width: 70em; }
.verdict li { margin: 0.3em 0; }
dl.defs dt { font-weight: bold; margin-top: 0.4em; } dl.defs dd { margin-left: 1.5em; }
tr.flag td { background: #f8d7da; } tr.pair-end td { border-bottom: 2px solid #666; }
""" + "".join(f".{level} {{ background: {colour}; }}\n" for level, colour in LEVEL_COLOURS.items())


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` tag with an inline base64 PNG (no software URL in the metadata)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="figure">'


def _distribution_figure(column: str, series: dict[str, pd.Series], categorical: bool) -> Figure:
    fig = Figure(figsize=(3.6, 2.6), layout="constrained")
    ax = fig.subplots()
    if categorical:
        shares = pd.DataFrame({label: s.value_counts(normalize=True) for label, s in series.items()}).fillna(
            0.0
        )
        shares = shares.sort_values("real", ascending=False).head(_MAX_CATEGORIES_DRAWN)
        width = 0.8 / len(series)
        for i, label in enumerate(series):
            ax.bar(
                np.arange(len(shares)) + i * width, shares[label], width, label=label, color=COLOURS[label]
            )
        ax.set_xticks(
            np.arange(len(shares)) + 0.4 - width / 2, shares.index, rotation=45, ha="right", fontsize=7
        )
        ax.set_ylabel("share")
    else:
        observed = {label: s.dropna().to_numpy() for label, s in series.items()}
        low, high = np.percentile(observed["real"], [0.5, 99.5])
        bins = np.linspace(low, high, 31) if high > low else 10
        for label, values in observed.items():
            if len(values):
                ax.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.5,
                    label=label,
                    color=COLOURS[label],
                )
        ax.set_ylabel("density")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # headroom for the legend
    ax.set_title(column, fontsize=9)
    ax.legend(fontsize=7, ncols=len(series), loc="upper center")
    return fig


def _correlation_figure(data: PlotData) -> Figure:
    matrices = {
        "real": correlation_matrix(data.real, data.numeric),
        "synthetic": correlation_matrix(data.synthetic, data.numeric),
    }
    matrices["|real - synthetic|"] = (matrices["real"] - matrices["synthetic"]).abs()
    size = max(3.0, 0.3 * len(data.numeric) + 2)
    fig = Figure(figsize=(3 * size + 1.5, size), layout="constrained")
    for ax, (title, matrix) in zip(fig.subplots(1, 3), matrices.items(), strict=True):
        is_delta = title.startswith("|")
        image = ax.imshow(
            matrix.to_numpy(), vmin=0 if is_delta else -1, vmax=1, cmap="Reds" if is_delta else "coolwarm"
        )
        ticks = np.arange(len(data.numeric))
        ax.set_xticks(ticks, data.numeric, rotation=90, fontsize=6)
        ax.set_yticks(ticks, data.numeric, fontsize=6)
        ax.set_title(f"Pearson r, {title}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.7)
    return fig


def _dcr_figure(data: PlotData) -> Figure:
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    privacy = data.privacy
    high = np.percentile(np.r_[privacy.dcr_synthetic, privacy.dcr_holdout], 99)
    bins = np.linspace(0, high if high > 0 else 1, 41)
    for label, values in (("synthetic", privacy.dcr_synthetic), ("holdout", privacy.dcr_holdout)):
        ax.hist(
            values, bins=bins, density=True, alpha=0.5, label=f"{label} to training", color=COLOURS[label]
        )
    ax.axvline(privacy.holdout_p5, color="k", ls="--", lw=1, label="holdout 5th percentile")
    ax.set_xlabel("distance to closest training record (standardized units)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return fig


def _projection_figure(data: PlotData) -> Figure:
    rng = np.random.default_rng(data.random_state)
    encoder = distance_encoder(data.categorical, data.numeric).fit(data.real)
    real = encoder.transform(subsample(data.real, _MAX_POINTS_DRAWN, rng))
    synthetic = encoder.transform(subsample(data.synthetic, _MAX_POINTS_DRAWN, rng))
    pca = PCA(n_components=min(2, real.shape[1]), random_state=data.random_state).fit(real)
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    for label, z in (("real", real), ("synthetic", synthetic)):
        xy = np.pad(pca.transform(z), ((0, 0), (0, 2 - pca.n_components_)))  # a 1-column table: PC2 = 0
        ax.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.4, label=label, color=COLOURS[label])
    explained = np.pad(pca.explained_variance_ratio_, (0, 2 - pca.n_components_))
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of real variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.legend(fontsize=7)
    return fig


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{cls}">' + "".join(rows[i]) + "</tr>"
        for i, cls in enumerate(row_classes or [""] * len(rows))
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _metric_groups(pack: EvidencePack) -> str:
    """Metrics per group (fidelity / utility / privacy): definitions, then the table, most severe first."""
    frame = pack.by_severity()
    groups = frame["metric"].map(lambda m: metric_info(m).group)
    out = []
    for group in GROUPS:
        part = frame[groups == group]
        if part.empty:
            continue
        defs = "".join(
            f"<dt>{html.escape(m)}</dt><dd>{html.escape(metric_info(m).definition)}"
            + (f"; <i>scale:</i> {html.escape(metric_info(m).normalisation)}" if metric_info(m).normalisation else "")
            + f"; {html.escape(pack.thresholds[m].describe())}</dd>"
            for m in dict.fromkeys(part["metric"])
        )
        rows = [
            [_cell(r.metric), _cell(r.variable), _cell(r.value),
             _cell("" if np.isnan(r.ci_low) else f"{r.ci_low:.4g} to {r.ci_high:.4g}"),
             _cell(pack.thresholds[r.metric].describe()), _cell(r.level)]
            for r in part.itertuples()
        ]
        out.append(f'<h3>{group.capitalize()}</h3><dl class="defs">{defs}</dl>'
                   + _table(["metric", "variable", "value", "interval", "threshold", "level"], rows,
                            list(part["level"])))
    return "".join(out)


def _details_rows(pack: EvidencePack) -> list[list[str]]:
    sections = {"detection": pack.details.get("detection"), "privacy": pack.details.get("privacy"),
                "closest_records": pack.details.get("closest_records")}
    sections.update({f"utility[{u['target']}]": u for u in pack.details.get("utility") or []})
    return [[_cell(f"{name}.{k}"), _cell(v)] for name, section in sections.items() for k, v in (section or {}).items()]


def _closest_html(pack: EvidencePack, data: PlotData) -> str:
    """The synthetic rows nearest to a real record, each shown above its closest real record."""
    if pack.closest is None:
        return "<p>Not computed (closest_k = 0).</p>"
    closest = pack.closest.closest.sort_values(["distance", "synthetic_row"], kind="stable")
    shown = closest.head(_CLOSEST_PAIRS_SHOWN)
    columns = list(data.real.columns)
    real_at = np.searchsorted(data.real_positions, shown["real_row"].to_numpy())
    rows, classes = [], []
    for pair, real_pos in zip(shown.itertuples(), real_at, strict=True):
        flag = "flag" if pair.nearer_than_holdout_p5 else ""
        rows.append([_cell(f"synthetic row {pair.synthetic_row}"), _cell(pair.distance)]
                    + _record_cells(data.synthetic.iloc[pair.synthetic_row], columns, data.date_columns))
        rows.append([_cell(f"real row {pair.real_row}"), _cell("")]
                    + _record_cells(data.real.iloc[real_pos], columns, data.date_columns))
        classes += [flag, f"{flag} pair-end"]
    summary = pack.closest.summary()
    return (f"<p>{summary['flagged_rows']} of {summary['synthetic_rows']} synthetic rows have a closest real "
            f"(training) record nearer than the holdout's 5th percentile ({summary['holdout_p5']:.4g}); those "
            f"pairs are shaded. Distance: {html.escape(ENCODING_DESCRIPTION)}. Shown: the "
            f"{len(shown)} closest pairs; all {pack.closest.k} closest records of every synthetic row are in "
            f"{html.escape(str(pack.details.get('closest_records', {}).get('file', 'closest_records.parquet')))}"
            " beside this report.</p>"
            + _table(["row", "distance", *columns], rows, classes))


def _record_cells(record: pd.Series, columns: list[str], dates: list[str]) -> list[str]:
    """One record's values: dates as dates, other numbers to 6 significant digits."""
    cells = []
    for col in columns:
        value = record[col]
        if col in dates and pd.notna(value):
            value = str((pd.Timestamp(0) + pd.to_timedelta(value, unit="D")).date())
        elif isinstance(value, float):
            cells.append(f'<td class="num">{value:.6g}</td>')
            continue
        cells.append(_cell(value))
    return cells


def _verdict_html(pack: EvidencePack) -> str:
    lines = pack.explanation()
    targets = pack.details.get("utility_targets")
    if targets:
        lines.append(f"Utility target(s): {targets['reason']}.")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines[1:])
    return f'<div class="verdict"><p><b>{html.escape(lines[0])}</b></p><ul>{items}</ul></div>'


def _guarantee_html(guarantee: dict | None) -> str:
    """The privacy guarantee section: the guarantee (or "none"), what it covers, the budget split."""
    if not guarantee:
        return "<p>Not recorded (pack written before guarantees were stated).</p>"
    rows = [[_cell(k), _cell(guarantee[k])] for k in ("guarantee", "mechanism", "epsilon_spent", "rho", "neighbours")
            if k in guarantee]
    split = guarantee.get("budget_split") or []
    split_table = _table(["measurement", "mechanism", "sensitivity", "noise scale", "rho"],
                         [[_cell(m["measurement"]), _cell(m["mechanism"]), _cell(m["sensitivity"]),
                           _cell(m["noise_scale"]), _cell(m["rho"])] for m in split]) if split else ""
    return f"{_table(['field', 'value'], rows)}<p>{html.escape(guarantee['statement'])}</p>{split_table}"


def _epsilon_curve_figure(curve: dict) -> Figure:
    """One panel per curve metric against epsilon (log scale): a line per DP mechanism, the
    synthesizer without a guarantee as a dashed horizontal line."""
    from models.evidence.epsilon_curve import CURVE_METRICS, LOWER_IS_BETTER

    fig = Figure(figsize=(3.2 * len(CURVE_METRICS), 3.0), layout="constrained")
    none = next((p for p in curve["points"] if p["epsilon"] is None), None)
    for ax, metric in zip(fig.subplots(1, len(CURVE_METRICS)), CURVE_METRICS, strict=True):
        for mechanism in curve["mechanisms"]:
            points = sorted((p["epsilon"], p[metric]) for p in curve["points"]
                            if p["mechanism"] == mechanism and p["epsilon"] is not None and p[metric] is not None)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=mechanism)
        if none is not None and none[metric] is not None:
            ax.axhline(none[metric], color="k", ls="--", lw=1, label="none")
        ax.set_xscale("log")
        ax.set_xticks(curve["epsilons"], [f"{e:g}" for e in curve["epsilons"]])
        ax.minorticks_off()
        ax.set_xlabel("epsilon")
        ax.set_title(f"{metric} ({'lower' if LOWER_IS_BETTER[metric] else 'higher'} is better)", fontsize=8)
        ax.legend(fontsize=7)
    return fig


def _epsilon_curve_html(curve: dict | None) -> str:
    """The epsilon curve section: what it is, the figure, the numbers, where the domain came from."""
    if not curve:
        return "<p>Not computed (study config <code>evidence.epsilon_curve</code> is off).</p>"
    from models.evidence.epsilon_curve import curve_rows

    header, rows = curve_rows(curve)
    domain = curve["domain"]["read_off_training_data"]
    domain_note = (f"Columns without a public domain in the study config, given one read off the training rows "
                   f"for this curve only (categories seen, range rounded outward; not private, so the curve is "
                   f"optimistic for them): {', '.join(domain)}." if domain else
                   "Every column's domain came from the study config.")
    return (f"<p>Delta {curve['delta']:g}; utility target: {html.escape(str(curve['target']))}; "
            f"{curve['rows']['train']} training and {curve['rows']['holdout']} holdout rows. "
            f"{html.escape(curve['statement'][0].upper() + curve['statement'][1:])}.</p>"
            f'<div class="figures">{_png(_epsilon_curve_figure(curve))}</div>'
            + _table(header, [[_cell(v) for v in row] for row in rows])
            + f"<p>{html.escape(domain_note)}</p>")


def render_html(pack: EvidencePack) -> str:
    """The report as one HTML string: what failed and why, context, metrics by group (most severe
    first), overlays, heatmaps, DCR, closest pairs side by side, projection."""
    data = pack.plot_data
    if data is None:
        raise ValueError(
            f"evidence pack {pack.run_id!r} has no plot data (read from JSON?); rebuild it to draw"
        )
    series_labels = ["real", "imputed", "synthetic"] if data.imputed is not None else ["real", "synthetic"]
    frames = {"real": data.real, "imputed": data.imputed, "synthetic": data.synthetic}
    overlays = "".join(
        _png(_distribution_figure(col, {k: frames[k][col] for k in series_labels}, col in data.categorical))
        for col in data.real.columns
    )
    context_rows = [[_cell(k), _cell(v)] for k, v in {"run_id": pack.run_id, **pack.context}.items()]
    context_rows.append([_cell("created_at"), _cell(pack.created_at)])
    details_rows = _details_rows(pack)
    correlation = (
        _png(_correlation_figure(data))
        if len(data.numeric) >= 2
        else "<p>Fewer than two numeric columns.</p>"
    )
    level = pack.overall_level
    title = html.escape(f"Evidence pack {pack.run_id}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title} <span class="badge {level}">{level}</span></h1>
{_verdict_html(pack)}
<h2>Context</h2>{_table(["field", "value"], context_rows)}
<h2>Privacy guarantee</h2>{_guarantee_html(pack.details.get("privacy_guarantee"))}
<h2>Privacy budget against fidelity, utility and MIA AUC (epsilon curve)</h2>{_epsilon_curve_html(pack.details.get("epsilon_curve"))}
<h2>Metrics</h2>{_metric_groups(pack)}
<h2>Supporting numbers</h2>{_table(["quantity", "value"], details_rows)}
<h2>Distributions: {" vs ".join(series_labels)}</h2><div class="figures">{overlays}</div>
<h2>Correlations (numeric columns)</h2><div class="figures">{correlation}</div>
<h2>Distance to closest training record</h2><div class="figures">{_png(_dcr_figure(data))}</div>
<h2>Closest real records, side by side</h2>{_closest_html(pack, data)}
<h2>PCA projection (fitted on real rows)</h2><div class="figures">{_png(_projection_figure(data))}</div>
</body></html>
"""
