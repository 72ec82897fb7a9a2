"""What keeps a full-size study's run affordable (benchmarks/results/full_size.md):

- the imputer comparison runs on at most ``BENCHMARK_MAX_ROWS`` subject-visits: a seeded sample of
  whole subjects above it, every row below;
- dbt's partial-parse state is kept per target, vars and profile environment, so a run's later dbt
  steps do not parse the whole project again, and two studies (or two data folders) never share one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import assets.warehouse as warehouse
from assets.imputation import benchmark_sample


def _matrix(visits_per_subject: list[int]) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples(
        [(f"S{s:04d}", v) for s, n in enumerate(visits_per_subject) for v in range(n)], names=["USUBJID", "VISITNUM"])
    return pd.DataFrame({"VS_SYSBP": np.arange(len(index), dtype=float)}, index=index)


def test_the_comparison_runs_on_a_seeded_sample_of_whole_subjects_above_the_cap():
    rng = np.random.default_rng(0)
    matrix = _matrix(list(rng.integers(3, 9, size=400)))
    assert benchmark_sample(matrix, len(matrix), seed=1) is matrix  # small enough: every row

    sample = benchmark_sample(matrix, 500, seed=1)
    subjects = sample.index.get_level_values("USUBJID")
    visits = matrix.index.get_level_values("USUBJID").value_counts()
    assert 500 - visits.max() < len(sample) <= 500
    assert subjects.value_counts().equals(visits[subjects.value_counts().index])  # whole subjects, every visit
    pd.testing.assert_frame_equal(sample, benchmark_sample(matrix, 500, seed=1))  # seeded
    assert set(subjects) != set(benchmark_sample(matrix, 500, seed=2).index.get_level_values("USUBJID"))
    first = matrix.index.get_level_values("USUBJID").unique()[: subjects.nunique()]
    assert set(subjects) != set(first)  # random subjects, not the first ones


def test_the_dbt_parse_state_is_kept_per_target_vars_and_profile_environment(tmp_path, monkeypatch):
    env = {"TRIALSYNTH_WAREHOUSE_PATH": "/data/a/warehouse.duckdb"}
    monkeypatch.setattr(warehouse, "dbt_environment", lambda: env)
    acme = warehouse._parse_state(tmp_path, "duckdb", '{"tenant": "acme", "study": "A"}')
    assert acme == warehouse._parse_state(tmp_path, "duckdb", '{"tenant": "acme", "study": "A"}')
    assert acme.parent == tmp_path / "target" / warehouse.PARSE_STATE
    others = {warehouse._parse_state(tmp_path, "duckdb", '{"tenant": "acme", "study": "B"}'),
              warehouse._parse_state(tmp_path, "clickhouse", '{"tenant": "acme", "study": "A"}')}
    env["TRIALSYNTH_WAREHOUSE_PATH"] = "/data/b/warehouse.duckdb"
    others.add(warehouse._parse_state(tmp_path, "duckdb", '{"tenant": "acme", "study": "A"}'))
    assert acme not in others and len(others) == 3
