"""Presigned S3 uploads of EDC drops, against the SeaweedFS of the stack fixtures: declare the drop, PUT
each file to its presigned URL, finish; the drop lands like a multipart upload (ready marker last), each
file checked against its declared size and sha256, the objects deleted. Missing and tampered files,
another tenant's upload and a deployment without an upload bucket answer problems naming what is wrong."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from tests.api_support import auth, client, local_settings
from trialsynth.ingest.landing import scan_ready_drops

DM = b"STUDYID,DOMAIN,USUBJID,SUBJID,SITEID,SEX,ARM\nST-1,DM,ST-1-001,001,01,F,Placebo\n"
AE = b"STUDYID,DOMAIN,USUBJID\n"
BUCKET = "api-uploads-test"


@pytest.fixture
def api(tmp_path, seaweedfs, monkeypatch):
    seaweedfs.make_bucket(BUCKET)
    for name, value in {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    settings = local_settings(tmp_path, upload_bucket=BUCKET, upload_s3_endpoint_url=seaweedfs.endpoint)
    with client(settings) as c:
        c.s3 = seaweedfs.client()
        yield c


def declare(files: dict[str, bytes], **extra) -> dict:
    return {"study": "ST-1", **extra,
            "files": [{"name": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]}


def post(c, path: str, key: str, tenant: str = "acme", **kwargs):
    return c.post(path, headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key}, **kwargs)


def put(upload: dict, name: str, data: bytes) -> None:
    (target,) = [f for f in upload["files"] if f["name"] == name]
    assert target["method"] == "PUT"
    r = requests.put(target["url"], data=data, timeout=30)
    assert r.status_code == 200, r.text


def objects(c, prefix: str) -> list[str]:
    return [o["Key"] for o in c.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_presigned_upload_lands_a_ready_drop_and_cleans_the_bucket(api):
    files = {"dm.csv": DM, "ae.csv": AE}
    r = post(api, "/ingest/v1/drops/uploads", "u1", json=declare(files, drop_id="2026-12-01"))
    assert r.status_code == 201, r.text
    upload = r.json()
    assert upload["drop_id"] == "2026-12-01" and r.headers["location"] == upload["finish"]
    prefix = f"acme/ST-1/{upload['upload_id']}/"
    assert all(prefix + f["name"] in f["url"] for f in upload["files"])  # the API's keys, under the tenant
    for name, data in files.items():
        put(upload, name, data)
    assert sorted(objects(api, prefix)) == sorted(prefix + n for n in files)
    done = post(api, upload["finish"], "f1")
    assert done.status_code == 201, done.text
    assert done.json()["landing"] == "landing:acme/ST-1/2026-12-01/"
    assert {f["name"]: f["sha256"] for f in done.json()["files"]} == {n: hashlib.sha256(d).hexdigest()
                                                                       for n, d in files.items()}
    drop_dir = api.app.state.ctx.settings.landing_dir / "acme" / "ST-1" / "2026-12-01"
    assert (drop_dir / "dm.csv").read_bytes() == DM and (drop_dir / "ae.csv").read_bytes() == AE
    assert (drop_dir / "_READY").stat().st_mtime_ns >= (drop_dir / "dm.csv").stat().st_mtime_ns
    drops, _ = scan_ready_drops(api.app.state.ctx.settings.landing_dir)
    assert [(d.tenant, d.study, d.drop_id) for d in drops] == [("acme", "ST-1", "2026-12-01")]
    assert objects(api, prefix) == []
    assert post(api, upload["finish"], "f1").content == done.content  # a retry gets the same answer
    again = post(api, upload["finish"], "f2")  # a new request: the upload has landed already
    assert again.status_code == 404


def test_missing_or_tampered_files_are_refused_naming_the_file_and_nothing_lands(api):
    files = {"dm.csv": DM, "ae.csv": AE}
    upload = post(api, "/ingest/v1/drops/uploads", "u2", json=declare(files)).json()
    assert upload["drop_id"].startswith("api-")
    put(upload, "dm.csv", DM)
    missing = post(api, upload["finish"], "early")
    assert missing.status_code == 409 and missing.json()["type"] == "/problems/upload-incomplete"
    assert missing.json()["errors"][0]["field"] == "upload.files.ae.csv"
    put(upload, "ae.csv", AE + b"ST-1,AE,ST-1-001\n")  # not the declared bytes
    tampered = post(api, upload["finish"], "tampered")
    assert tampered.status_code == 422 and tampered.json()["errors"][0]["field"] == "upload.files.ae.csv"
    study_dir = api.app.state.ctx.settings.landing_dir / "acme" / "ST-1"
    assert not list(study_dir.iterdir())  # no drop, no staging folder
    put(upload, "ae.csv", AE)
    assert post(api, upload["finish"], "right").status_code == 201
    assert (study_dir / upload["drop_id"] / "_READY").exists()


def test_another_tenants_upload_is_404_and_bad_declarations_name_the_field(api):
    upload = post(api, "/ingest/v1/drops/uploads", "u3", json=declare({"dm.csv": DM})).json()
    put(upload, "dm.csv", DM)
    theirs = post(api, upload["finish"], "steal", tenant="globex")
    unknown = post(api, f"/ingest/v1/drops/uploads/{uuid.uuid4().hex}/finish", "unknown", tenant="globex")
    assert theirs.status_code == unknown.status_code == 404
    assert not (api.app.state.ctx.settings.landing_dir / "globex").exists()
    bad = declare({"dm.csv": DM, "_READY": b""})
    r = post(api, "/ingest/v1/drops/uploads", "ready", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.files.1.name"
    r = post(api, "/ingest/v1/drops/uploads", "dup", json=declare({"dm.csv": DM}) | {"files": declare({"dm.csv": DM})["files"] * 2})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.files"
    big = declare({"dm.csv": DM})
    big["files"][0]["bytes"] = api.app.state.ctx.settings.api.max_upload_bytes + 1
    r = post(api, "/ingest/v1/drops/uploads", "big", json=big)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.files"


def test_without_an_upload_bucket_presigned_uploads_are_404_naming_why(tmp_path):
    with client(local_settings(tmp_path)) as c:
        r = post(c, "/ingest/v1/drops/uploads", "off", json=declare({"dm.csv": DM}))
        assert r.status_code == 404 and r.json()["type"] == "/problems/presigned-uploads-disabled"
        assert "multipart" in r.json()["detail"]
