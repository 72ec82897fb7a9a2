"""The API asks the lake store the settings choose, not local folders: with the lake in S3 (SeaweedFS),
a study exists for /synth/v1 when its bronze is in the lake bucket, and /ingest/v1 refuses a tenant name
that clashes with a tenant whose raw zone is in the bucket."""

from __future__ import annotations

import uuid

import pytest

from tests.api_support import auth, client, local_settings
from trialsynth.storage import open_lake_store

TRAIN = {"study": "ST-1", "synthesizer": "copula", "seed": 11,
         "columns": {"AGE": {"kind": "integer", "min_value": 18, "max_value": 85}}}


@pytest.fixture
def s3_api(seaweedfs, tmp_path, monkeypatch):
    bucket = f"api-lake-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    settings = local_settings(tmp_path).model_copy(update={
        "warehouse": local_settings(tmp_path).warehouse.model_copy(update={"target": "clickhouse"}),
        "lake": local_settings(tmp_path).lake.model_copy(update={
            "store": "s3", "s3_bucket": bucket, "s3_endpoint_url": seaweedfs.endpoint, "raw_retention_days": 0})})
    with client(settings) as c:
        yield c


def test_a_study_exists_when_its_bronze_is_in_the_lake_bucket(s3_api) -> None:
    settings = s3_api.app.state.ctx.settings

    def train(key: str, study: str) -> int:
        r = s3_api.post("/synth/v1/train", json=TRAIN | {"study": study},
                        headers=auth(settings, "acme") | {"Idempotency-Key": key})
        assert r.status_code != 404 or r.json()["errors"][0]["field"] == "body.study", r.text
        return r.status_code

    (settings.study_dir("acme", "ST-2") / "bronze").mkdir(parents=True)  # a local folder is not the lake
    assert train("t1", "ST-1") == 404 and train("t2", "ST-2") == 404
    open_lake_store(settings).write_bytes("acme/ST-1/bronze/dm.parquet", b"rows")
    open_lake_store(settings).write_bytes("beta/ST-2/bronze/dm.parquet", b"another tenant's rows")
    assert train("t3", "ST-1") == 503  # past the study check: the Dagster it submits to is unreachable here
    assert train("t4", "ST-2") == 404


def test_a_tenant_clashing_with_one_in_the_raw_bucket_is_refused(s3_api) -> None:
    settings = s3_api.app.state.ctx.settings
    open_lake_store(settings, "raw").write_bytes("acme/ST-1/d1/v1/dm.csv", b"sponsor bytes")
    r = s3_api.post("/ingest/v1/drops", data={"study": "ST-1"}, files=[("files", ("dm.csv", b"a,b\n", "text/csv"))],
                    headers=auth(settings, "ACME") | {"Idempotency-Key": "u1"})
    assert r.status_code == 409 and r.json()["type"].endswith("tenant-clash"), r.text
    assert "'acme' already has data" in r.json()["detail"]
    assert not (settings.landing_dir / "ACME").exists()
    ok = s3_api.post("/ingest/v1/drops", data={"study": "ST-1"}, files=[("files", ("dm.csv", b"a,b\n", "text/csv"))],
                     headers=auth(settings, "acme") | {"Idempotency-Key": "u2"})
    assert ok.status_code == 201, ok.text
