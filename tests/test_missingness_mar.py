"""MAR diagnostics: cross-validated AUC of predicting each variable's missingness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.missingness import ampute, mar_diagnostics


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, 1500)
    sbp = 100 + 0.6 * age + rng.normal(0, 8, 1500)
    hr = rng.normal(70, 9, 1500)
    df = pd.DataFrame({"age": age, "sbp": sbp, "hr": hr})
    df["sbp"] = ampute(df, "MAR", 0.3, 1, driver_columns=["age"], columns=["sbp"], strength=3.0)[:, 1]
    df["hr"] = ampute(df[["hr"]], "MCAR", 0.3, 2)[:, 0]
    return df


@pytest.mark.parametrize("classifier", ["logistic", "hgb"])
def test_auc_separates_mar_from_mcar_variables(classifier: str) -> None:
    out = mar_diagnostics(_frame(), cv=5, random_state=0, classifier=classifier).set_index("variable")
    assert out.loc["sbp", "auc"] > 0.75  # missingness predicted by the observed age
    assert abs(out.loc["hr", "auc"] - 0.5) < 0.08  # MCAR: no better than chance
    assert out.loc["sbp", "n_missing"] == 450 and out.loc["sbp", "pct_missing"] == pytest.approx(30.0)
    assert out.loc["age", "reason"] == "no missing values" and np.isnan(out.loc["age", "auc"])
    assert (out.loc[["sbp", "hr"], "reason"] == "").all() and (out.loc[["sbp", "hr"], "n_folds"] == 5).all()


def test_seeded_and_unassessable_variables_get_a_reason() -> None:
    df = _frame().assign(empty=np.nan, rare=1.0)
    df.loc[:1, "rare"] = np.nan  # 2 missing: 2 folds at most
    df.loc[5, "age"] = np.nan  # 1 missing: cannot be cross-validated
    out = mar_diagnostics(df, cv=5).set_index("variable")
    assert out.loc["empty", "reason"] == "all values missing"
    assert out.loc["age", "reason"].startswith("too few missing (1)")
    assert out.loc["rare", "n_folds"] == 2 and np.isfinite(out.loc["rare", "auc"])
    pd.testing.assert_frame_equal(out, mar_diagnostics(df, cv=5).set_index("variable"))
    single = mar_diagnostics(pd.DataFrame({"x": [1.0, np.nan, 2.0, np.nan, 3.0]}), cv=2)
    assert single.loc[0, "reason"] == "no other column with observed values to predict from"


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="non-numeric.*'arm'"):
        mar_diagnostics(_frame().assign(arm="placebo"))
    with pytest.raises(ValueError, match="infinite.*'hr'"):
        mar_diagnostics(_frame().assign(hr=np.inf))
    with pytest.raises(ValueError, match="cv"):
        mar_diagnostics(_frame(), cv=1)
    with pytest.raises(ValueError, match="classifier"):
        mar_diagnostics(_frame(), classifier="svm")  # type: ignore[arg-type]
