"""MAR diagnostics: how well the other observed variables predict each variable's missingness.

For every variable with some (not all) values missing, a classifier predicts its missingness
indicator from the other columns (their own gaps filled with the column mean, for the classifier
only) and is scored by stratified k-fold cross-validated ROC AUC. AUC near 0.5: the observed data
carry no information about whether the variable is missing (consistent with MCAR for it); AUC well
above 0.5: missingness depends on observed data (evidence against MCAR, compatible with MAR).
No test on observed data can tell MAR from MNAR.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from models.missingness._validation import as_float_matrix

COLUMNS = ["variable", "n_missing", "n_observed", "pct_missing", "auc", "auc_sd", "n_folds", "reason"]


def _classifier(kind: str, random_state: int):
    if kind == "logistic":
        return make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(), LogisticRegression(max_iter=1000))
    if kind == "hgb":
        return make_pipeline(SimpleImputer(strategy="mean"), HistGradientBoostingClassifier(random_state=random_state))
    raise ValueError(f"classifier must be 'logistic' or 'hgb', got {kind!r}")


def mar_diagnostics(
    df: pd.DataFrame | np.ndarray,
    cv: int = 5,
    random_state: int = 0,
    *,
    classifier: Literal["logistic", "hgb"] = "logistic",
) -> pd.DataFrame:
    """Per variable, the cross-validated AUC of predicting its missingness from the other columns.

    Parameters
    ----------
    df : DataFrame or array (n_rows, n_variables), numeric (bool allowed), NaN for missing.
    cv : int >= 2, folds (fewer when a variable has fewer missing or observed rows than ``cv``).
    random_state : int, seeds the fold split and the classifier.
    classifier : "logistic" (standardized logistic regression) or "hgb" (histogram gradient
        boosting, catches non-linear dependence).

    Returns
    -------
    DataFrame, one row per variable: variable, n_missing, n_observed, pct_missing (0-100),
    auc (mean over folds), auc_sd, n_folds, reason. ``auc`` is NaN only for variables that cannot
    be assessed, and then ``reason`` says why (no missing values, all missing, too few missing
    or observed rows to cross-validate, no other observed column); otherwise ``reason`` is empty.
    Raises ValueError naming non-numeric or infinite columns.
    """
    if not isinstance(cv, int | np.integer) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}")
    values, labels = as_float_matrix(df, "df")
    _classifier(classifier, random_state)  # validate the name up front
    missing = np.isnan(values)
    usable = ~missing.all(axis=0)
    rows = []
    for j, name in enumerate(labels):
        y = missing[:, j]
        n_miss, n_obs = int(y.sum()), int((~y).sum())
        predictors = np.flatnonzero(usable & (np.arange(len(labels)) != j))
        folds = min(cv, n_miss, n_obs)
        auc = sd = np.nan
        if n_miss == 0:
            reason = "no missing values"
        elif n_obs == 0:
            reason = "all values missing"
        elif folds < 2:
            reason = f"too few missing ({n_miss}) or observed ({n_obs}) rows to cross-validate"
        elif predictors.size == 0:
            reason = "no other column with observed values to predict from"
        else:
            reason = ""
            split = StratifiedKFold(folds, shuffle=True, random_state=random_state)
            # single-threaded: trial-sized fits gain nothing from OpenMP threads, which slow
            # down badly (busy-waiting) on a shared machine
            with threadpool_limits(limits=1):
                scores = cross_val_score(_classifier(classifier, random_state), values[:, predictors], y,
                                         cv=split, scoring="roc_auc")
            auc, sd = float(scores.mean()), float(scores.std())
        rows.append({"variable": name, "n_missing": n_miss, "n_observed": n_obs,
                     "pct_missing": 100.0 * n_miss / len(y), "auc": auc, "auc_sd": sd,
                     "n_folds": folds if not reason else 0, "reason": reason})
    return pd.DataFrame(rows, columns=COLUMNS)
