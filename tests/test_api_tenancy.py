"""The API's own tables on the stack's Postgres with row-level security (issue 12): the API connects as
the non-owner application role, every request runs in its token's tenant, and tenant A can neither see
nor change tenant B's jobs, idempotency records, quota or uploads — through the API or with hand-written
SQL; a session that never set a tenant sees nothing. An unsecured store is refused at startup."""

from __future__ import annotations

import time
import uuid

import jwt
import psycopg2
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.exc import DBAPIError

from infra.stack.postgres import APP_ROLE
from tests.api_support import client, local_settings
from trialsynth.api.auth import jwks_document
from trialsynth.api.dagster import RunInfo
from trialsynth.api.store import metadata, secure_store
from trialsynth.tenancy import API_TENANT_TABLES, install_tenant_guard, tenant_scope

A, B = "acme", "beta"
POWER = {"endpoint": "continuous", "effect": 0.5, "simulations": 50, "curve_points": 2, "seed": 4}
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # a Postgres store is no embedded default: RS256


def stack_settings(tmp_path, store_url: str):
    jwks = tmp_path / "jwks.json"
    jwks.parent.mkdir(parents=True, exist_ok=True)
    jwks.write_text(jwks_document({"k1": KEY.public_key()}))
    return local_settings(tmp_path, store_url=store_url, jwt_algorithm="RS256", jwks_path=jwks)


def auth(settings, tenant: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "alice", "tenant": tenant, "aud": settings.api.audience, "iss": settings.api.issuer,
              "iat": now, "exp": now + 600}
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})}


class QueuedDagster:
    """Stands in for Dagster: every run launched stays QUEUED (the tables, not Dagster, are under test)."""

    def ping(self) -> str:
        return "stand-in"

    def add_partition(self, *_args) -> None:
        pass

    def submit(self, _job_name: str, _run_config: dict, _tags: dict, api_job: str) -> str:
        return f"run-{api_job}"

    def runs(self, *, run_ids: list[str] | None = None, tags: dict | None = None) -> list[RunInfo]:
        return [RunInfo(run_id, "QUEUED") for run_id in run_ids or []]

    def run(self, run_id: str) -> RunInfo:
        return RunInfo(run_id, "QUEUED")


def new_database(pg) -> str:
    name = f"api_rls_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", password=pg.superuser_password,
                            dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


@pytest.fixture(scope="module")
def pg(stack):
    return stack.postgres


@pytest.fixture(scope="module")
def secured(pg) -> str:
    """A database with the API's tables secured as ``make stack-up`` secures them."""
    database = new_database(pg)
    report = secure_store(pg.superuser_url(database), app_role=APP_ROLE)
    assert set(report.tenant_tables) == set(API_TENANT_TABLES)
    return database


@pytest.fixture
def api(pg, secured, tmp_path):
    settings = stack_settings(tmp_path, pg.url(secured, with_password=True, user=APP_ROLE))
    with client(settings, dagster=QueuedDagster()) as c:
        yield c


def post_power(c, tenant: str, key: str):
    return c.post("/simulate/v1/power", json=POWER,
                  headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key})


def test_tenants_see_and_change_only_their_own_rows_through_the_api_and_by_hand(api, pg, secured):
    key = f"k-{uuid.uuid4().hex}"
    job_a = post_power(api, A, key)
    job_b = post_power(api, B, key)  # the same key in another tenant is another request
    assert job_a.status_code == job_b.status_code == 202, (job_a.text, job_b.text)
    id_a, id_b = job_a.json()["job_id"], job_b.json()["job_id"]
    assert id_a != id_b
    assert post_power(api, A, key).content == job_a.content  # A's own record replays
    settings = api.app.state.ctx.settings
    assert api.get(f"/jobs/{id_a}", headers=auth(settings, B)).status_code == 404
    assert {j["job_id"] for j in api.get("/jobs", headers=auth(settings, B)).json()["jobs"]} >= {id_b}
    assert id_a not in {j["job_id"] for j in api.get("/jobs", headers=auth(settings, B)).json()["jobs"]}

    engine = api.app.state.ctx.engine  # the API's own engine: application role, tenant guard
    with tenant_scope(B), engine.begin() as conn:
        assert set(conn.execute(sa.text("SELECT tenant FROM api_jobs")).scalars()) == {B}  # no WHERE tenant
        assert set(conn.execute(sa.text("SELECT tenant FROM api_idempotency_keys")).scalars()) == {B}
        assert set(conn.execute(sa.text("SELECT tenant FROM api_usage")).scalars()) == {B}
        assert conn.execute(sa.text("UPDATE api_jobs SET status = 'canceled' WHERE id = :i"), {"i": id_a}).rowcount == 0
        assert conn.execute(sa.text("DELETE FROM api_idempotency_keys WHERE tenant = :t"), {"t": A}).rowcount == 0
    with tenant_scope(B), engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security"):
        conn.execute(sa.text("UPDATE api_jobs SET tenant = :a WHERE id = :i"), {"a": A, "i": id_b})
    with tenant_scope(B), engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security"):
        conn.execute(sa.text("INSERT INTO api_idempotency_keys (tenant, key, fingerprint, state, resource_id, "
                             "locked_until, created_at, expires_at) VALUES (:a, 'forged', 'f', 'done', 'r', now(), "
                             "now(), now() + interval '1 day')"), {"a": A})
    with engine.connect() as conn:  # a session that never set a tenant
        for table in (*API_TENANT_TABLES, "api_uploads"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0, table
    admin = sa.create_engine(pg.superuser_url(secured))
    with admin.connect() as conn:  # both rows are there, untouched
        rows = dict(conn.execute(sa.text("SELECT id, status FROM api_jobs WHERE id IN (:a, :b)"),
                                 {"a": id_a, "b": id_b}).all())
    admin.dispose()
    assert rows == {id_a: "queued", id_b: "queued"}


def test_a_postgres_store_without_row_level_security_or_as_superuser_is_refused(pg, secured, tmp_path):
    plain = new_database(pg)
    owner = sa.create_engine(pg.superuser_url(plain))
    metadata.create_all(owner)  # the tables, but no RLS
    owner.dispose()
    unsecured = stack_settings(tmp_path / "a", pg.url(plain, with_password=True, user=APP_ROLE))
    with pytest.raises(RuntimeError, match="api_idempotency_keys, api_jobs, api_uploads, api_usage are missing or "
                                           "lack FORCE ROW LEVEL SECURITY"):
        client(unsecured, dagster=QueuedDagster())
    superuser = stack_settings(tmp_path / "b", pg.superuser_url(secured))
    with pytest.raises(RuntimeError, match="bypasses row-level security"):
        client(superuser, dagster=QueuedDagster())


def test_the_guard_is_the_one_place_the_tenant_reaches_postgres(api):
    engine = api.app.state.ctx.engine
    assert install_tenant_guard(engine) is engine  # installed by open_store; installing again is a no-op
    with tenant_scope(A), engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('app.current_tenant', true)")).scalar() == A
        assert conn.execute(sa.text("SELECT current_user")).scalar() == APP_ROLE
