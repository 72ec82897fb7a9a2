"""FastKNNImputer on bad input: clear errors naming the columns, never a NaN in the output."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from models.impute import FastKNNImputer


def test_output_never_has_nan_on_hostile_but_valid_data() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 9))
    X[rng.random(X.shape) < 0.6] = np.nan  # many rows sharing nothing with many donors
    X[:20] = np.nan  # rows with nothing observed
    X[:, 4] = np.nan
    X[100, 4] = 1.0  # a column with a single observed value
    X[:, 5] = np.where(np.isnan(X[:, 5]), np.nan, 2.0)  # constant column
    for weights in ("uniform", "distance"):
        out = FastKNNImputer(n_neighbors=5, weights=weights).fit_transform(X)
        assert not np.isnan(out).any()
        assert (out[:, 4] == 1.0).all() and (out[:, 5] == 2.0).all()


@pytest.mark.parametrize(
    ("params", "match"),
    [({"n_neighbors": 0}, "n_neighbors"), ({"n_neighbors": 2.5}, "n_neighbors"),
     ({"weights": "gaussian"}, "weights"), ({"empty_features": "keep"}, "empty_features"),
     ({"block_size": 0}, "block_size")],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FastKNNImputer(**params).fit(np.ones((10, 2)))


def test_bad_data_names_the_columns() -> None:
    df = pd.DataFrame({"age": [50.0, np.nan, 61.0, 70.0], "sex": ["F", "M", "M", "F"], "hr": [60.0, 61, 62, 63]})
    with pytest.raises(ValueError, match="non-numeric column\\(s\\) 'sex'"):
        FastKNNImputer(n_neighbors=2).fit(df)
    objects = np.array([[1.0, "a"], [np.nan, "b"]], dtype=object)
    with pytest.raises(ValueError, match="non-numeric column\\(s\\) 'column 1'"):
        FastKNNImputer(n_neighbors=1).fit(objects)
    with pytest.raises(ValueError, match="infinite values in column\\(s\\) 'hr'"):
        FastKNNImputer(n_neighbors=2).fit(df.drop(columns="sex").assign(hr=[1.0, -np.inf, 2.0, 3.0]))
    with pytest.raises(ValueError, match="'empty'.*no observed value"):
        FastKNNImputer(n_neighbors=2).fit(df.drop(columns="sex").assign(empty=np.nan))
    with pytest.raises(ValueError, match="n_neighbors=5 exceeds the 4 row"):
        FastKNNImputer(n_neighbors=5).fit(df.drop(columns="sex"))
    with pytest.raises(ValueError, match="not fitted"):
        FastKNNImputer().transform(np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        FastKNNImputer().fit(np.ones(5))


def test_memory_grows_with_the_block_not_with_rows_squared() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8000, 5))
    X[rng.random(X.shape) < 0.2] = np.nan
    tracemalloc.start()
    try:
        FastKNNImputer(block_size=100, n_jobs=1).fit_transform(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8000 * 8000 * 4 / 8  # an eighth of one 8000 x 8000 float32 matrix
