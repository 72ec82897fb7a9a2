"""Held-out evaluation: metric definitions, the masking protocol, and the evidence-based choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.impute.evaluate import (
    ALL_COLUMNS,
    EvaluationResult,
    evaluate_imputers,
    score_imputation,
    select_imputer,
)


def _data(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    return z @ np.array([[1.0, 2.0, -1.0, 0.5]]) + 0.1 * rng.normal(size=(n, 4))


def _overall(result: EvaluationResult, imputer: str, metric: str) -> pd.Series:
    s = result.scores
    return s[(s.imputer == imputer) & (s.metric == metric) & (s.column == ALL_COLUMNS)]["value"].reset_index(drop=True)


def test_score_imputation_metrics_by_hand():
    true = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2], [0.2, 0.8]])
    hidden = np.array([[True, False], [True, False], [False, True], [False, True]])
    masked = np.where(hidden, np.nan, true)
    imputed = np.where(hidden, true + np.array([0.1, -0.3]), true)
    rows = {(m, c): v for m, c, v in score_imputation(true, masked, imputed, hidden, ["a", "b"])}
    assert rows["rmse", ALL_COLUMNS] == pytest.approx(np.sqrt((2 * 0.1**2 + 2 * 0.3**2) / 4))
    # a constant shift of the hidden values moves their distribution by exactly the shift
    assert rows["wasserstein", "a"] == pytest.approx(0.1)
    assert rows["wasserstein", "b"] == pytest.approx(0.3)
    assert rows["wasserstein", ALL_COLUMNS] == pytest.approx(0.2)
    # pre (observed after masking) vs post (imputed complete column)
    assert rows["mean_delta", "a"] == pytest.approx(np.mean([0.1, 1.1, 0.5, 0.2]) - np.mean([0.5, 0.2]))
    assert rows["sd_delta", "b"] == pytest.approx(np.std([0.0, 1.0, -0.1, 0.5], ddof=1) - np.std([0.0, 1.0], ddof=1))
    assert rows["mean_delta", ALL_COLUMNS] == pytest.approx(
        (abs(rows["mean_delta", "a"]) + abs(rows["mean_delta", "b"])) / 2)


def test_rmse_is_on_the_min_max_scale():
    X = _data()
    res = evaluate_imputers(X, ["mean"], rate=0.2, repeats=5, random_state=1)
    rescaled = evaluate_imputers(X * np.array([1.0, 1000.0, 0.01, 3.0]) + np.array([0.0, -7.0, 100.0, 1e4]),
                                 ["mean"], rate=0.2, repeats=5, random_state=1)
    np.testing.assert_allclose(_overall(res, "mean", "rmse"), _overall(rescaled, "mean", "rmse"), rtol=1e-9)
    # mean imputation under MCAR errs by about one (scaled) standard deviation
    scaled = (X - X.min(0)) / (X.max(0) - X.min(0))
    expected = np.sqrt(np.mean(scaled.var(axis=0)))
    assert res.table().loc["mean", "mean"] == pytest.approx(expected, rel=0.15)


def test_choice_follows_the_held_out_score():
    res = evaluate_imputers(_data(), {"mean": None, "knn": {"n_neighbors": 5}, "mice": {"max_iter": 5}},
                            rate=0.2, repeats=3, random_state=0)
    table = res.table()
    choice = select_imputer(res)
    assert choice.name == table.index[0] and choice.name != "mean"
    assert choice.score == pytest.approx(table["mean"].iloc[0])
    assert choice.params == res.params[choice.name]
    assert f"RMSE {table['mean'].iloc[0]:.4f}" in choice.reason
    assert f"next best {table.index[1]}" in choice.reason and "3 repeats of 20% MCAR" in choice.reason
    summary = res.summary
    assert set(summary.columns) == {"imputer", "metric", "column", "mean", "sd", "n"}
    assert (summary["n"][summary["column"] == ALL_COLUMNS] == 3).all()


def _result(rows: list[tuple[str, float, float, float]]) -> EvaluationResult:
    """Hand-made result from (name, mean RMSE, half range, seconds): two repeats at mean +/- half range."""
    records = []
    for name, rmse, half_range, seconds in rows:
        for r, sign in enumerate((-1, 1)):
            records += [(name, r, "rmse", ALL_COLUMNS, rmse + sign * half_range),
                        (name, r, "seconds", ALL_COLUMNS, seconds)]
    scores = pd.DataFrame(records, columns=["imputer", "repeat", "metric", "column", "value"])
    return EvaluationResult(scores=scores, params={r[0]: {"k": i} for i, r in enumerate(rows)}, mechanism="MAR",
                            rate=0.3, repeats=2, random_state=0)


def test_ties_go_to_lower_sd_then_to_speed():
    choice = select_imputer(_result([("a", 0.05, 0.01, 1.0), ("b", 0.05, 0.001, 5.0), ("c", 0.09, 0.0, 0.1)]))
    assert choice.name == "b" and "tied" in choice.reason and "30% MAR" in choice.reason
    choice = select_imputer(_result([("a", 0.05, 0.001, 1.0), ("b", 0.05, 0.001, 5.0)]))
    assert choice.name == "a" and choice.params == {"k": 0}
    choice = select_imputer(_result([("a", 0.06, 0.0, 0.1), ("b", 0.05, 0.01, 5.0)]))
    assert choice.name == "b" and "tied" not in choice.reason


def test_original_gaps_are_kept_and_never_scored():
    X = _data(150)
    X[:40, 0] = np.nan  # missing before evaluation
    df = pd.DataFrame(X, columns=["hba1c", "bmi", "sbp", "egfr"])
    res = evaluate_imputers(df, {"mean": None, "gain": {"iterations": 100}}, repeats=2, random_state=0)
    scores = res.scores
    # a scored originally-missing cell would make RMSE NaN
    assert np.isfinite(scores["value"]).all()
    assert set(scores.loc[scores.metric == "wasserstein", "column"]) == {"hba1c", "bmi", "sbp", "egfr", ALL_COLUMNS}


def test_same_seed_same_masks():
    X = _data(100)
    a = evaluate_imputers(X, ["median", "knn"], repeats=3, random_state=5).scores
    b = evaluate_imputers(X, ["median", "knn"], repeats=3, random_state=5).scores
    c = evaluate_imputers(X, ["median", "knn"], repeats=3, random_state=6).scores
    keep = lambda s: s[s.metric != "seconds"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(a), keep(b))
    assert not np.allclose(keep(a)["value"], keep(c)["value"])


@pytest.mark.parametrize("mechanism", ["MAR", "MNAR"])
def test_other_mechanisms(mechanism):
    res = evaluate_imputers(_data(150), ["mean", "knn"], mechanism=mechanism, rate=0.2, repeats=2, random_state=0)
    assert res.mechanism == mechanism and np.isfinite(res.scores["value"]).all()
    assert res.table().loc["knn", "mean"] < res.table().loc["mean", "mean"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mechanism": "MXAR"}, "mechanism"), ({"rate": 0.0}, "rate"), ({"rate": 1.0}, "rate"),
    ({"repeats": 0}, "repeats"), ({"imputers": ["mean", "hot-deck"]}, "hot-deck"), ({"imputers": []}, "imputers"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"X": _data(20), "imputers": ["mean"]} | kwargs
    with pytest.raises(ValueError, match=match):
        evaluate_imputers(**args)


def test_bad_data_is_named():
    df = pd.DataFrame(_data(20), columns=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="'c'"):
        evaluate_imputers(df.assign(c=np.nan), ["mean"])
    with pytest.raises(ValueError, match="'b'"):
        evaluate_imputers(df.assign(b=np.inf), ["mean"])
    with pytest.raises(ValueError, match="no observed value"):
        evaluate_imputers(_data(4)[:, :2], ["mean"], rate=0.95)
