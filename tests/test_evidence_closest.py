"""Closest real records of every synthetic row: right neighbours, the holdout flag, the Parquet file,
the side-by-side report section, and strata (conditional cohorts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from models.evidence.closest import CLOSEST_COLUMNS, closest_records
from models.evidence.encoding import clean_frame, distance_encoder
from models.evidence.pack import CLOSEST_FILE, MIN_STRATUM_ROWS, build_evidence_pack, write_pack

CAT, NUM = ["SEX"], ["AGE", "WEIGHT"]


def cohort(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"AGE": rng.normal(50, 10, n), "WEIGHT": rng.normal(70, 12, n), "SEX": rng.choice(["F", "M"], n)})
    df.loc[df.index % 7 == 0, "WEIGHT"] = np.nan
    return df


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


def test_each_synthetic_row_gets_its_k_nearest_real_records_and_copies_are_flagged() -> None:
    real, holdout = cohort(200, 0), cohort(100, 1)
    synthetic = pd.concat([cohort(30, 2), real.iloc[[5, 17]]], ignore_index=True)  # two copied records
    clean = {k: clean_frame(df, CAT, NUM) for k, df in (("r", real), ("s", synthetic), ("h", holdout))}
    result = closest_records(clean["r"], clean["s"], clean["h"], CAT, NUM, k=3)
    assert list(result.table.columns) == CLOSEST_COLUMNS and len(result.table) == 32 * 3
    enc = distance_encoder(CAT, NUM).fit(clean["r"])
    z_r, z_s, z_h = (enc.transform(clean[k]) for k in "rsh")
    brute = np.linalg.norm(z_s[:, None, :] - z_r[None, :, :], axis=2)  # (32, 200)
    for row, group in result.table.groupby("synthetic_row"):
        assert group["rank"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(group["distance"], np.sort(brute[row])[:3], atol=1e-9)
        np.testing.assert_allclose(brute[row, group["real_row"]], group["distance"], atol=1e-9)
    p5 = np.percentile(np.linalg.norm(z_h[:, None, :] - z_r[None, :, :], axis=2).min(axis=1), 5)
    assert result.holdout_p5 == pytest.approx(p5)
    closest = result.closest
    assert closest.loc[[30, 31], "real_row"].tolist() == [5, 17]
    assert closest.loc[[30, 31], "distance"].max() < 1e-9
    assert closest["nearer_than_holdout_p5"].tolist() == (closest["distance"] < p5).tolist()
    assert closest.loc[[30, 31], "nearer_than_holdout_p5"].all()


def test_the_pack_writes_the_table_beside_it_and_shows_closest_pairs_side_by_side(tmp_path) -> None:
    real = cohort(120, 3)
    synthetic = pd.concat([cohort(40, 4), real.iloc[[9]]], ignore_index=True)
    pack = build_evidence_pack(real, synthetic, cohort(60, 5), CAT, run_id="r", n_bootstrap=0, closest_k=2)
    paths = write_pack(pack, tmp_path)
    assert paths["closest"] == tmp_path / CLOSEST_FILE
    table = pd.read_parquet(paths["closest"])
    assert list(table.columns) == CLOSEST_COLUMNS and len(table) == 41 * 2
    page = paths["html"].read_text()
    section = page[page.index("Closest real records, side by side"):]
    assert "synthetic row 40" in section and "real row 9" in section  # the copy is the closest pair
    assert section.index("synthetic row 40") < section.index("real row 9")
    assert "standardized" in section  # the encoding is stated
    details = pack.details["closest_records"]
    assert details["file"] == CLOSEST_FILE and details["flagged_rows"] >= 1 and "one-hot" in details["encoding"]


def test_a_conditional_cohort_is_compared_with_its_real_stratum_and_a_tiny_stratum_is_warned(tmp_path) -> None:
    real = cohort(150, 6)
    real["SEX"] = "M"
    women = [3, 40, 77, 101, 130]
    real.loc[women, "SEX"] = "F"  # fewer than a handful
    holdout = cohort(60, 7)
    synthetic = cohort(30, 8).assign(SEX="F")
    pack = build_evidence_pack(real, synthetic, holdout, CAT, run_id="r", n_bootstrap=0, closest_k=1,
                               conditions={"SEX": "F"})
    assert (pack.plot_data.real["SEX"] == "F").all() and len(pack.plot_data.real) == 5
    assert any(f"only 5 real subject(s) (fewer than {MIN_STRATUM_ROWS})" in w for w in pack.details["warnings"])
    assert any("only 5 real subject(s)" in line for line in pack.explanation())
    assert set(pack.closest.table["real_row"]) <= set(women)  # positions in the full real frame
    with pytest.raises(ValueError, match="no real row is in the requested stratum"):
        build_evidence_pack(real, synthetic, holdout, CAT, run_id="r", conditions={"SEX": "X"})
