"""POST /ingest/v1/drops: the upload lands as a complete drop the landing sensor picks up (ready marker
written last), file names follow the naming rules, and a drop id cannot be landed twice."""

from __future__ import annotations

import hashlib

import pytest

from tests.api_support import auth, client, local_settings
from trialsynth.ingest.landing import scan_ready_drops

DM = b"STUDYID,DOMAIN,USUBJID,SUBJID,SITEID,SEX,ARM\nST-1,DM,ST-1-001,001,01,F,Placebo\n"


@pytest.fixture
def api(tmp_path):
    with client(local_settings(tmp_path)) as c:
        yield c


def upload(c, key: str, files, study: str = "ST-1", drop_id: str | None = None, tenant: str = "acme"):
    form = {"study": study} | ({"drop_id": drop_id} if drop_id else {})
    return c.post("/ingest/v1/drops", data=form, files=[("files", f) for f in files],
                  headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key})


def test_upload_lands_a_ready_drop_that_the_landing_scan_takes(api):
    files = [("dm.csv", DM, "text/csv"), ("ae.csv", b"STUDYID,DOMAIN,USUBJID\n", "text/csv")]
    r = upload(api, "d1", files, drop_id="2026-12-01")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["landing"] == "landing:acme/ST-1/2026-12-01/" and body["ready"]
    assert {f["name"]: f["sha256"] for f in body["files"]} == {n: hashlib.sha256(d).hexdigest() for n, d, _ in files}
    drop_dir = api.app.state.ctx.settings.landing_dir / "acme" / "ST-1" / "2026-12-01"
    assert (drop_dir / "dm.csv").read_bytes() == DM
    marker = drop_dir / "_READY"
    assert marker.stat().st_mtime_ns >= max((drop_dir / n).stat().st_mtime_ns for n, _, _ in files)
    assert not [p for p in drop_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    drops, skipped = scan_ready_drops(api.app.state.ctx.settings.landing_dir)
    assert [(d.tenant, d.study, d.drop_id) for d in drops] == [("acme", "ST-1", "2026-12-01")] and not skipped
    # same key, same files: the original answer; another key for the same drop id: 409
    assert upload(api, "d1", files, drop_id="2026-12-01").content == r.content
    again = upload(api, "d2", files, drop_id="2026-12-01")
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "body.drop_id"


def test_without_a_drop_id_the_api_names_the_drop_the_same_way_on_every_retry(api):
    first = upload(api, "auto", [("dm.csv", DM, "text/csv")])
    assert first.status_code == 201 and first.json()["drop_id"].startswith("api-")
    assert upload(api, "auto", [("dm.csv", DM, "text/csv")]).json()["drop_id"] == first.json()["drop_id"]


@pytest.mark.parametrize("name", ["../dm.csv", ".hidden.csv", "dm csv.csv", "dm;drop.csv", "manifest.json", "dm\u0430.csv"])
def test_unsafe_or_reserved_file_names_are_refused_naming_the_file(api, name):
    r = upload(api, f"bad-{name.encode().hex()}", [("dm.csv", DM, "text/csv"), (name, b"x", "text/plain")])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.files.1"
    assert not (api.app.state.ctx.settings.landing_dir / "acme").exists()


def test_duplicate_file_names_and_bad_study_names_are_refused(api):
    r = upload(api, "dup", [("dm.csv", DM, "text/csv"), ("dm.csv", DM, "text/csv")])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.files"
    r = upload(api, "study", [("dm.csv", DM, "text/csv")], study="../x")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.study"
