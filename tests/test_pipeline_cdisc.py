"""The real study: the CDISC pilot lands as tenant cdisc through the sensor and the full Dagster
pipeline, and the numbers in the marts match what the data says."""

from __future__ import annotations

import duckdb
import pytest

from tests.conftest import fast_study_config
from trialsynth.commands.demo import land_cdisc_pilot
from trialsynth.lineage import LocalLineageStore, verify_chain
from trialsynth.runner import process_landing_zone
from trialsynth.settings import get_settings


@pytest.fixture
def cdisc_run(settings, cdisc_sdtm, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home_path))
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "CDISCPILOT01")))
    get_settings.cache_clear()
    settings = get_settings()
    land_cdisc_pilot(settings.landing_dir, cdisc_sdtm)
    outcomes = process_landing_zone(log=lambda _m: None)
    return settings, outcomes


def test_cdisc_pilot_through_sensor_and_pipeline(cdisc_run):
    settings, outcomes = cdisc_run
    assert [(o.partition_key, o.status) for o in outcomes] == [("cdisc|CDISCPILOT01", "SUCCESS")], outcomes
    # every file of the drop is reported with where it went: nothing silently set aside
    summary = "\n".join(outcomes[0].summary)
    for line in ("suppae.xpt -> bronze/supp/suppae", "ex.xpt -> bronze/other/ex, validated by define.xml",
                 "define.xml -> raw zone", "lb.csv -> bronze/lb"):
        assert line in summary, summary
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert q("select count(*), count(distinct site_id) from dim_subject where tenant_id = 'cdisc'") == [(306, 17)]
    assert q("select count(*), count(distinct usubjid) from fact_ae where tenant_id = 'cdisc'") == [(1191, 225)]
    # the pilot has no DV, query log or site table: they are reported absent, not as zeros
    absent = {r[0] for r in q("select domain from mart_data_availability where tenant_id = 'cdisc' and not is_present")}
    assert {"dv", "queries", "sites", "crf_pages"} <= absent
    assert q("select count(*) from mart_missingness where tenant_id = 'cdisc'")[0][0] > 0
    records = LocalLineageStore(settings.lake_dir).read("cdisc", "CDISCPILOT01")
    assert verify_chain(records).ok
    keys = {r["asset_key"] for r in records}
    assert {"raw_drop", "bronze/dm", "dbt/mart_missingness"} <= keys

    # a redelivered drop (same bytes) is not ingested twice
    again = process_landing_zone(log=lambda _m: None)
    assert [o.status for o in again] == ["SKIPPED"]
