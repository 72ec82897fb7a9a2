"""Evidence report: what failed and why at the top, metrics by group with definitions, worst first,
strict JSON, summaries that keep their line breaks."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from models.evidence.pack import EvidencePack, build_evidence_pack, write_pack
from models.evidence.thresholds import LEVELS, metric_info

CATEGORICAL = ["SEX", "ARM"]


def cohort(n: int, seed: int, weight_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    return pd.DataFrame({"AGE": age, "WEIGHT": 70 + 0.5 * (age - 50) + rng.normal(0, 3, n) + weight_shift,
                         "SEX": rng.choice(["F", "M"], n), "ARM": rng.choice(["A", "P"], n)})


@pytest.fixture(scope="module")
def pack() -> EvidencePack:
    """WEIGHT shifted by 2 IQRs in the synthetic rows: it fails, the rest passes."""
    with threadpool_limits(1):
        return build_evidence_pack(cohort(300, 0), cohort(300, 1, weight_shift=15.0), cohort(150, 2), CATEGORICAL,
                                   run_id="run-report", n_bootstrap=0, notes=["copula used: 240 training rows"])


def test_the_top_text_says_what_failed_and_why(pack) -> None:
    lines = pack.explanation()
    counts = pack.metrics["level"].value_counts()
    assert lines[0] == (f"FAIL: {counts.get('fail', 0)} fail, {counts.get('warn', 0)} warn, "
                        f"{counts.get('pass', 0)} pass of {len(pack.metrics)} metrics.")
    wasserstein = next(line for line in lines if line.startswith("wasserstein"))
    assert "WEIGHT" in wasserstein and "fail > 0.25" in wasserstein
    assert "divided by the real column's interquartile range" in wasserstein  # its normalisation, said
    assert not any(line.startswith("ks_complement") for line in lines)  # a derived metric is not repeated
    assert lines[-1] == "Note: copula used: 240 training rows"


def test_metrics_are_grouped_defined_and_sorted_by_severity(pack, tmp_path) -> None:
    page = write_pack(pack, tmp_path)["html"].read_text()
    assert page.index('class="verdict"') < page.index("<h2>Context</h2>") < page.index("<h2>Metrics</h2>")
    headings = re.findall(r"<h3>(\w+)</h3>", page)
    assert headings == ["Fidelity", "Privacy"]  # no utility target given: no utility group
    for metric in set(pack.metrics["metric"]):
        assert f"<dt>{metric}</dt><dd>{metric_info(metric).definition}" in html.unescape(page)
    fidelity = page[page.index("<h3>Fidelity</h3>"):page.index("<h3>Privacy</h3>")]
    levels = re.findall(r'<tr class="(pass|warn|fail)"><td>', fidelity)
    ranks = [LEVELS.index(level) for level in levels]
    assert ranks == sorted(ranks, reverse=True) and levels[0] == "fail"
    ordered = pack.by_severity()
    assert ordered.iloc[0]["metric"] in ("wasserstein", "ks_statistic", "ks_complement")


def test_json_has_null_never_nan_and_summaries_keep_their_line_breaks(pack, tmp_path) -> None:
    path = pack.to_json(tmp_path / "evidence.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert all(m["ci_low"] is None and m["ci_high"] is None for m in data["metrics"])  # no interval here
    assert EvidencePack.from_json(path).summary_text() == pack.summary_text()
    markdown = pack.summary_markdown()
    assert markdown.startswith("```\n") and markdown.endswith("\n```")
    assert markdown.splitlines()[1:-1] == pack.summary_text().splitlines()


def test_a_version_1_pack_still_reads(pack, tmp_path) -> None:
    data = pack.to_dict()
    data["schema_version"] = 1
    data["details"]["utility"] = {"target": "ARM", "task": "classification", "ratio": 0.9}
    for row in data["metrics"]:
        del row["ci_low"], row["ci_high"]
    (tmp_path / "v1.json").write_text(json.dumps(data))
    old = EvidencePack.from_json(tmp_path / "v1.json")
    assert old.metrics["ci_low"].isna().all()
    assert "utility (classification of ARM)" in old.summary_text()
