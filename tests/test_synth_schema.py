"""Schema inference, overrides and the DataFrame <-> model-matrix encoding."""

import numpy as np
import pandas as pd
import pytest

from models.synth import ColumnSpec, TableSchema
from models.synth.transformers import MISSING_SUFFIX, ModeSpecificNormalizer, TableEncoder


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "USUBJID": [f"S{i:03d}" for i in range(n)],
            "ARM": rng.choice(["Placebo", "Active"], n),
            "AGE": rng.integers(18, 80, n),
            "WEIGHT": np.where(rng.random(n) < 0.2, np.nan, rng.normal(70, 10, n).round(1)),
            "LAB": rng.lognormal(1, 0.5, n),
            "DOSE": rng.choice([0.0, 50.0, 100.0], n),
            "SEV": pd.Categorical(
                rng.choice(["mild", "severe"], n), ["mild", "moderate", "severe"], ordered=True
            ),
            "RANDDT": pd.Timestamp("2022-03-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
            "SMOKER": rng.random(n) < 0.3,
        }
    )


def test_infer_kinds_ranges_and_precision(frame):
    schema = TableSchema.infer(frame, overrides={"USUBJID": None})
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "ARM": "categorical",
        "AGE": "integer",
        "WEIGHT": "continuous",
        "LAB": "continuous",
        "DOSE": "integer",
        "SEV": "ordinal",
        "RANDDT": "date",
        "SMOKER": "categorical",
    }
    assert schema["AGE"].min_value == frame.AGE.min() and schema["AGE"].max_value == frame.AGE.max()
    assert schema["WEIGHT"].decimals == 1 and schema["LAB"].decimals is None
    assert schema["SEV"].categories == ("mild", "severe")  # observed categories, in dtype order
    assert schema["RANDDT"].reference_date == frame.RANDDT.min()
    assert schema["SMOKER"].categories == (False, True)


def test_overrides_and_identifier_guard(frame):
    with pytest.raises(ValueError, match="USUBJID"):
        TableSchema.infer(frame, max_categories=20)
    schema = TableSchema.infer(
        frame,
        overrides={
            "USUBJID": None,
            "DOSE": {"kind": "categorical"},
            "AGE": {"kind": "integer", "min_value": 18, "max_value": 100},
            "SEV": {"kind": "ordinal", "categories": ["mild", "moderate", "severe"]},
        },
    )
    assert "USUBJID" not in schema
    assert schema["DOSE"].kind == "categorical" and schema["DOSE"].categories == (0.0, 50.0, 100.0)
    assert (schema["AGE"].min_value, schema["AGE"].max_value) == (18, 100)
    assert schema["SEV"].categories == ("mild", "moderate", "severe")
    with pytest.raises(ValueError, match="NOPE"):
        TableSchema.infer(frame, overrides={"NOPE": "integer"})


def test_schema_errors_name_the_column(frame):
    frame = frame.assign(EMPTY=np.nan)
    with pytest.raises(ValueError, match="EMPTY.*entirely missing"):
        TableSchema.infer(frame, overrides={"USUBJID": None})
    with pytest.raises(ValueError, match="ARM.*not among its categories"):
        TableSchema((ColumnSpec("ARM", "categorical", categories=("Placebo",)),)).complete(frame)
    with pytest.raises(ValueError, match="AGE.*min_value"):
        ColumnSpec("AGE", "integer", min_value=10, max_value=5)
    with pytest.raises(ValueError, match="X.*kind"):
        ColumnSpec("X", "text")
    with pytest.raises(ValueError, match="MISSING"):
        TableSchema((ColumnSpec("MISSING", "continuous"),)).complete(frame)


def test_schema_dict_round_trip(frame):
    schema = TableSchema.infer(frame, overrides={"USUBJID": None})
    assert TableSchema.from_dict(schema.to_dict()) == schema


def test_encoder_round_trip_keeps_values_types_and_missingness(frame):
    schema = TableSchema.infer(frame, overrides={"USUBJID": None})
    encoder = TableEncoder(schema).fit(frame)
    assert [c.name for c in encoder.columns_][-1] == "WEIGHT" + MISSING_SUFFIX
    matrix = encoder.transform(frame, np.random.default_rng(0))
    assert not np.isnan(matrix).any()
    back = encoder.inverse_transform(matrix)
    expected = frame.drop(columns="USUBJID")
    pd.testing.assert_frame_equal(back, expected, check_dtype=True, check_categorical=True)


def test_encoder_enforces_constraints():
    schema = TableSchema(
        (
            ColumnSpec("AGE", "integer", min_value=18, max_value=65),
            ColumnSpec("HT", "continuous", min_value=100.0, max_value=200.0, decimals=1),
            ColumnSpec(
                "DT", "date", min_value="2020-01-01", max_value="2020-01-31", reference_date="2020-01-01"
            ),
            ColumnSpec("ARM", "categorical", categories=("A", "B")),
        )
    )
    df = pd.DataFrame(
        {"AGE": [20, 30], "HT": [150.0, 160.0], "DT": pd.to_datetime(["2020-01-02", "2020-01-03"])}
    )
    encoder = TableEncoder(schema.complete(df.assign(ARM=["A", "B"]))).fit(df.assign(ARM=["A", "B"]))
    raw = np.array([[10.4, 250.123, -5.2, -1.0], [40.6, 123.456, 99.0, 7.0]])
    out = encoder.inverse_transform(raw)
    assert out.AGE.tolist() == [18, 41]
    assert out.HT.tolist() == [200.0, 123.5]
    assert out.DT.tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-31")]
    assert out.ARM.tolist() == ["A", "B"]


def test_mode_specific_normalizer_separates_modes_and_inverts():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-10, 1, 3000), rng.normal(20, 2, 7000)])
    norm = ModeSpecificNormalizer(max_components=10, subsample=2000, random_state=0).fit(x)
    assert 2 <= norm.n_modes <= 10
    encoded = norm.transform(x, rng)
    assert encoded.shape == (len(x), 1 + norm.n_modes)
    assert np.all(np.abs(encoded[:, 0]) <= 0.99)
    assert np.allclose(encoded[:, 1:].sum(axis=1), 1)
    assert np.allclose(norm.inverse_transform(encoded), x, atol=1e-6)
