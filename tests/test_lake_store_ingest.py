"""The ingest assets on a lake in S3 (SeaweedFS), chosen by settings only: the raw zone, bronze and
quarantine land in the bucket, the local data folder keeps none of them, lineage names the objects."""

from __future__ import annotations

import io
import json
import uuid

import boto3
import dagster as dg
import polars as pl
import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_drop
from trialsynth.domains import DOMAINS
from trialsynth.settings import get_settings
from trialsynth.storage.lake import sse_c_request_args

DM = (b"STUDYID,DOMAIN,USUBJID,SUBJID,SITEID,AGE,SEX,ARMCD,ARM,RFSTDTC\n"
      b"S1,DM,S1-001,001,701,63,F,PBO,Placebo,2024-01-05\n"
      b"S1,DM,S1-002,002,701,seventy,M,XAN,Xanomab,2024-01-09\n"  # quarantined: AGE is not a number
      b"S1,DM,S1-003,003,702,58,F,PBO,Placebo,2024-02-01\n")


@pytest.fixture
def s3_lake(seaweedfs, settings, monkeypatch):
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(bucket)
    seaweedfs.make_bucket(f"{bucket}-raw", object_lock=True)  # the raw zone: write-once
    for name, value in {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
                        "TRIALSYNTH_WAREHOUSE__TARGET": "clickhouse", "TRIALSYNTH_LAKE__STORE": "s3",
                        "TRIALSYNTH_LAKE__S3_BUCKET": bucket, "TRIALSYNTH_LAKE__S3_RAW_BUCKET": f"{bucket}-raw",
                        "TRIALSYNTH_LAKE__RAW_RETENTION_DAYS": "7",
                        "TRIALSYNTH_LAKE__S3_ENDPOINT_URL": seaweedfs.endpoint}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    client = boto3.session.Session().client(  # a fresh session: boto3's default one keeps stale credentials
        "s3", endpoint_url=seaweedfs.endpoint, region_name="us-east-1", aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key)
    yield get_settings(), client, bucket
    get_settings.cache_clear()


def _objects(client, bucket: str, store=None) -> dict[str, bytes]:
    """Every object of ``bucket`` (folder markers left out), read with the tenant's SSE-C key that the lake
    ``store`` sends for it (the raw bucket's envelope objects: without)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    found = {}
    for key in keys:
        sse_c = store.sse_c_key(key.removeprefix("lake/")) if store is not None else None
        args = sse_c_request_args(sse_c) if sse_c else {}
        found[key] = client.get_object(Bucket=bucket, Key=key, **args)["Body"].read()
    return found


def test_raw_bronze_and_quarantine_go_to_the_bucket(s3_lake) -> None:
    from assets.ingest import bronze, raw_drop
    from orchestration.partitions import TENANT_STUDY
    from orchestration.resources import LakeResource, LineageResource

    settings, client, bucket = s3_lake
    make_drop(settings.landing_dir, "t1", "S1", "d1", {"dm.csv": DM})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, ["t1|S1"])
    resources = {"lake": LakeResource(), "lineage": LineageResource()}
    result = dg.materialize([raw_drop, bronze], partition_key="t1|S1", resources=resources, instance=instance)
    assert result.success

    lake = LakeResource().store()
    objects = _objects(client, bucket, lake)
    raw = _objects(client, f"{bucket}-raw")
    assert set(raw) == {"raw/t1/S1/d1/v1/dm.csv", "raw/t1/S1/d1/v1/_manifest.json", "raw/t1/S1/d1/_PUBLISHING.json"}
    assert "completed_at" in json.loads(raw.pop("raw/t1/S1/d1/_PUBLISHING.json"))  # kept, completed: no delete
    for key in raw:  # the sponsor's bytes, write-once: COMPLIANCE retention on every object
        assert client.head_object(Bucket=f"{bucket}-raw", Key=key)["ObjectLockMode"] == "COMPLIANCE"
    assert LakeResource().store("raw").lock_problems("t1") == []
    assert {"lake/t1/S1/raw_pointer.json",
            "lake/t1/S1/bronze/_domains.parquet", "lake/t1/S1/quarantine/d1-v1/dm.parquet",
            "lake/t1/S1/quarantine/d1-v1/dm_reasons.parquet",
            *(f"lake/t1/S1/bronze/{d}.parquet" for d in DOMAINS)} <= set(objects)
    assert raw["raw/t1/S1/d1/v1/dm.csv"] != DM  # the sponsor's bytes, encrypted at rest
    # the lake's objects are stored with SSE-C under the tenant's key: a GET without it is refused
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="lake/t1/S1/bronze/dm.parquet")
    dm = LakeResource().read_bronze("t1|S1", "dm")
    assert dm["USUBJID"].to_list() == ["S1-001", "S1-003"]
    events = {tuple(e.asset_key.path): e.event_specific_data.materialization.metadata
              for e in result.get_asset_materialization_events()}
    assert events[("bronze", "dm")]["quarantine"].value == f"s3://{bucket}/lake/t1/S1/quarantine/d1-v1/dm.parquet"
    assert events[("raw_drop",)]["raw_path"].value == f"s3://{bucket}-raw/raw/t1/S1/d1/v1"

    # nothing of the raw zone, bronze or quarantine on local disk: of the partition, only its drop registry
    # (local state); the lineage chain and key canary of this test's local lineage store are not lake data
    local = [p.relative_to(settings.data_path).as_posix() for p in settings.data_path.rglob("*")
             if p.is_file() and not p.is_relative_to(settings.landing_dir)]
    assert [p for p in local if not p.startswith(("lake/lineage/", "lake/_keycheck/"))] == ["lake/t1/S1/_drops.sqlite"]

    # lineage names the objects (what verification re-reads) by bucket and key
    records = LineageResource().get_store().read("t1", "S1")
    (bronze_dm,) = [r for r in records if r["asset_key"] == "bronze/dm"]
    assert bronze_dm["outputs"][0]["namespace"] == f"s3://{bucket}"
    assert bronze_dm["outputs"][0]["name"] == "lake/t1/S1/bronze/dm.parquet"

    # the same bytes again: the raw zone keeps its version (read from the manifests in the bucket)
    again = dg.materialize([raw_drop], partition_key="t1|S1", resources=resources, instance=instance)
    (event,) = again.get_asset_materialization_events()
    assert event.event_specific_data.materialization.metadata["new_version"].value is False
    assert pl.read_parquet(io.BytesIO(objects["lake/t1/S1/bronze/_domains.parquet"])).height == len(DOMAINS)

    # verify-lineage also checks the raw zone's locks: intact now; a plain PUT over a sponsor's file by
    # another client (SeaweedFS cannot refuse it) fails the partition, naming the object
    from trialsynth.lineage import run_verification

    store = LineageResource().get_store()
    assert run_verification(settings, store, write_status=False).ok
    client.put_object(Bucket=f"{bucket}-raw", Key="raw/t1/S1/d1/v1/dm.csv", Body=b"forged")
    (partition,) = run_verification(settings, store, write_status=False).partitions
    assert [(f.asset_key, f.problem) for f in partition.failures] == [
        ("raw_zone", f"s3://{bucket}-raw/raw/t1/S1/d1/v1/dm.csv: written over (1 newer version(s); the first is kept, locked)")]


DM2 = DM.replace(b"seventy", b"71")  # the next drop: every row passes


def test_a_bronze_publish_cut_half_way_is_refused_and_the_rerun_repairs_it(s3_lake, monkeypatch) -> None:
    """SeaweedFS stops answering after a few objects of the new bronze: the bucket mixes two drops, every
    reader through the lake resource is refused (naming the partition, saying a rerun repairs it), and
    running bronze again publishes it whole."""
    from assets.ingest import bronze, raw_drop
    from orchestration.partitions import TENANT_STUDY
    from orchestration.resources import LakeResource, LineageResource
    from trialsynth.storage import IncompletePublishError, S3LakeStore

    settings, client, bucket = s3_lake
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, ["t1|S1"])
    resources = {"lake": LakeResource(), "lineage": LineageResource()}
    make_drop(settings.landing_dir, "t1", "S1", "d1", {"dm.csv": DM})
    assert dg.materialize([raw_drop, bronze], partition_key="t1|S1", resources=resources, instance=instance).success
    make_drop(settings.landing_dir, "t1", "S1", "d2", {"dm.csv": DM2, "ae.csv": b"STUDYID,DOMAIN,USUBJID,AESEQ,AETERM\n"
                                                       b"S1,AE,S1-001,1,HEADACHE\n"})
    before = _objects(client, bucket, LakeResource().store())

    puts: list[str] = []
    original = S3LakeStore._put

    def put(self, key: str, data: bytes, replace: bool) -> None:
        if "/bronze/" in key and len(puts) >= 2:
            raise ConnectionError("could not connect to the S3 lake at 127.0.0.1:1 (bucket b): the server was killed")
        puts.append(key)
        original(self, key, data, replace)

    with monkeypatch.context() as m:
        m.setattr(S3LakeStore, "_put", put)
        cut = dg.materialize([raw_drop, bronze], partition_key="t1|S1", resources=resources, instance=instance,
                             raise_on_error=False)
    assert not cut.success
    after = _objects(client, bucket, LakeResource().store())
    changed = sorted(k for k in after if "/bronze/" in k and after[k] != before.get(k))
    unchanged = sorted(k for k in after if "/bronze/" in k and after[k] == before.get(k))
    assert changed and unchanged, "the bucket holds a bronze mixing the two drops"

    lake = LakeResource()
    for read in (lambda: lake.read_bronze("t1|S1", "dm"), lambda: lake.read_table("t1|S1", "bronze/_domains.parquet"),
                 lambda: lake.sha256("t1|S1", "bronze/ae.parquet")):
        with pytest.raises(IncompletePublishError, match=r"partition t1\|S1: .*bronze/.* rerun .* whole"):
            read()
    with pytest.raises(IncompletePublishError, match=r"partition t1\|S1: .*bronze/"):
        lake.check_partition_published("t1|S1")  # what every dbt step checks before dbt reads the files

    again = dg.materialize([bronze], partition_key="t1|S1", resources=resources, instance=instance)
    assert again.success
    assert lake.read_bronze("t1|S1", "dm")["USUBJID"].to_list() == ["S1-001", "S1-002", "S1-003"]
    assert lake.read_bronze("t1|S1", "ae")["AETERM"].to_list() == ["HEADACHE"]
    assert not [k for k in _objects(client, bucket, lake.store()) if k.endswith("_PUBLISHING.json")]
    lake.check_partition_published("t1|S1")
