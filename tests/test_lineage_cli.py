"""``trialsynth verify-lineage`` and ``trialsynth lineage show|export|key`` on the settings' lake."""

from __future__ import annotations

import json

import polars as pl

from tests.lineage_support import fill, raw_write
from trialsynth.cli import main
from trialsynth.lineage import LocalLineageStore
from trialsynth.lineage.audit import STATUS_PATH


def _store(settings) -> LocalLineageStore:
    return LocalLineageStore(settings.lake_dir)  # signed with the settings' key file, as the pipeline does


def test_verify_lineage_reports_first_broken_link_and_status_table(settings, capsys, tmp_path):
    store = _store(settings)
    records = fill(store, "acme", "S1", 4, tmp_path / "out")
    fill(store, "beta", "S9", 2, tmp_path / "out")
    assert main(["verify-lineage"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lineage verified at ") and "2 partition(s), 6 manifests" in out and "all intact" in out
    status = pl.read_parquet(settings.lake_dir / "acme" / "S1" / STATUS_PATH)
    assert status.select("tenant_id", "study_id", "status", "manifests").row(0) == ("acme", "S1", "verified", 4)

    key = f"lineage/acme/S1/{3:012d}-{records[3]['hash']}.json"
    raw_write(store, key, store.backend.get(key).data.replace(b'"i":3', b'"i":4'))
    assert main(["verify-lineage", "--tenant", "acme", "--study", "S1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("lineage verification FAILED at ")
    assert "first broken link: partition acme|S1, sequence 3, asset 'asset3': stored hash" in out
    status = pl.read_parquet(settings.lake_dir / "acme" / "S1" / STATUS_PATH)
    assert status["status"][0] == "broken" and status["first_broken_link"][0].startswith("partition acme|S1, sequence 3")
    assert main(["verify-lineage", "--tenant", "beta"]) == 0  # only beta's chains: intact
    capsys.readouterr()
    assert main(["verify-lineage", "--tenant", "../x", "--study", "S1"]) == 2
    assert main(["verify-lineage", "--tenant", "acme", "--study", "NOPE"]) == 2
    assert "no lineage chain for acme/NOPE" in capsys.readouterr().err


def test_verify_lineage_checkpoint_flag(settings, capsys, tmp_path):
    fill(_store(settings), "acme", "S1", 3, tmp_path / "out")
    assert main(["verify-lineage", "--checkpoint"]) == 0
    assert (settings.lake_dir / "lineage" / "acme" / "S1" / "checkpoints" / f"{3:012d}.json").is_file()
    assert main(["verify-lineage"]) == 0
    assert "1 checkpoints" in capsys.readouterr().out


def test_lineage_show_export_and_key(settings, capsys, tmp_path):
    records = fill(_store(settings), "acme", "S1", 3, tmp_path / "out")
    assert main(["lineage", "show", "--tenant", "acme", "--study", "S1", "--asset", "asset1"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 manifests" in out and "| 1 |" in out and records[1]["hash"][:12] in out
    assert records[0]["hash"][:12] not in out
    target = tmp_path / "events.jsonl"
    assert main(["lineage", "export", "--openlineage", "--output", str(target)]) == 0
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert [e["job"]["name"] for e in events] == ["asset0", "asset1", "asset2"]
    assert events[2] == records[2]["manifest"] and events[0]["eventType"] == "COMPLETE"
    assert main(["lineage", "key"]) == 0
    out = capsys.readouterr().out
    assert records[0]["key_id"] in out and str(settings.data_path.parent / ".trialsynth-keys") in out
    assert main(["lineage", "show", "--tenant", "acme", "--study", "none"]) == 2


def test_lineage_on_s3_from_settings(settings, seaweedfs, monkeypatch, capsys, tmp_path):
    """lineage.store: s3 (as the stack's settings say): the resource appends under Object Lock and
    the command verifies the bucket."""
    import uuid

    from orchestration.resources import LineageResource
    from trialsynth.hashing import sha256_bytes
    from trialsynth.settings import get_settings

    bucket = f"lineage-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(bucket, object_lock=True)
    for name, value in {"TRIALSYNTH_LINEAGE__STORE": "s3", "TRIALSYNTH_LINEAGE__S3_BUCKET": bucket,
                        "TRIALSYNTH_LINEAGE__S3_ENDPOINT_URL": seaweedfs.endpoint, "TRIALSYNTH_LINEAGE__S3_RETENTION_DAYS": "1",
                        "AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    out = tmp_path / "qtl.parquet"
    out.write_bytes(b"qtl")
    rec = LineageResource().record("acme|S1", asset_key="qtl_limits", output_sha256=sha256_bytes(b"qtl"),
                                   output_path=out, code_version="t")
    key = f"lineage/acme/S1/{0:012d}-{rec['hash']}.json"
    client = seaweedfs.client()
    assert client.get_object_retention(Bucket=bucket, Key=key)["Retention"]["Mode"] == "COMPLIANCE"
    assert main(["verify-lineage"]) == 0
    assert f"s3://{bucket}), all intact" in capsys.readouterr().out
    out.write_bytes(b"changed")
    assert main(["verify-lineage", "--tenant", "acme"]) == 1
    assert "sequence 0, asset 'qtl_limits': output file:" in capsys.readouterr().out
    out.write_bytes(b"qtl")
    client.put_object(Bucket=bucket, Key=key, Body=b"forged", ChecksumAlgorithm="SHA256")  # a plain overwrite
    assert main(["verify-lineage"]) == 1
    assert f"first broken link: partition acme|S1, sequence 0: {key} was overwritten (2 versions)" in capsys.readouterr().out
