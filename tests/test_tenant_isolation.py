"""Tenant isolation, proven (issue 12): tenant ``acme`` never reads or changes tenant ``beta``'s data,
in any store, by any path. Read top to bottom; every test names the attempt it makes.

1. Postgres (model registry, API tables) — row-level security, used as the application role
   ``trialsynth_app`` of the running stack (``make stack-up`` applied it), through the product's code
   and through hand-written SQL.
2. The lake — a job of one tenant handed a path of another.
3. Encrypted raw objects — another tenant's envelope does not open.
4. ClickHouse — the per-tenant SQL parses; its grants and row condition are enforced by the
   ClickHouse engine (chDB 26.9); the stand-in admits no tenant login. A real server is exercised
   when ``TRIALSYNTH_TEST_CLICKHOUSE_URL`` names one.
5. Serving — a tenant's serving file holds only its rows and the SQL Superset runs on it cannot
   reach another file. That Superset itself connects each tenant's users to their own file (SQL Lab,
   custom-SQL datasets, the results cache, users of no or two tenants) is attacked through its REST
   API and SQL Lab page in ``tests/test_superset_tenant_routing.py`` (it needs a running Superset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import duckdb
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from infra.stack.postgres import APP_ROLE
from orchestration.resources import LakeResource
from trialsynth.api import store as api_store
from trialsynth.artifacts import save_model
from trialsynth.registry import ModelRegistry, UnknownModelError
from trialsynth.security import KeyService, SecurityError
from trialsynth.settings import Settings
from trialsynth.tenancy import (
    API_SHARED_TABLES,
    API_TENANT_TABLES,
    TenantContextError,
    TenantPathError,
    apply_row_level_security,
    install_tenant_guard,
    tenant_scope,
)
from trialsynth.tenancy.clickhouse import TenantAccess, apply_tenant_access, render_tenant_access, users_xml

A, B = "acme", "beta"
SHA = "0" * 64


# ----------------------------------------------------------------------------------------------
# 1. Postgres
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg(stack):
    return stack.postgres


@pytest.fixture(scope="module")
def app_engine(pg):
    """The product's engine: application role, the tenant guard installed."""
    engine = install_tenant_guard(sa.create_engine(pg.url("registry", with_password=True, user=APP_ROLE)))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def admin_engine(pg):
    """The cluster's superuser (bypasses RLS): only to look at what really is in the tables."""
    engine = sa.create_engine(pg.superuser_url("registry"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def models(app_engine, tmp_path_factory):
    """One model registered by each tenant, through the registry's own code (its artifact encrypted
    with the tenant's key in the tenant's lake folder)."""
    keys = KeyService(Settings(data_dir=tmp_path_factory.mktemp("registry-lake") / "data"))
    registry = ModelRegistry(engine=app_engine, keys=keys)
    ids = {}
    for tenant in (A, B):
        artifact = save_model({"tenant": tenant}, f"{tenant}/S1/model.pkl", tenant, keys)
        with tenant_scope(tenant):
            ids[tenant] = registry.register(kind="synthesizer", name=f"{tenant}-copula", trained_by=f"{tenant}-ds",
                                            training_data_sha256=SHA, artifact_path=artifact.uri)
    return ids


def _ids(conn, sql: str, **params) -> set[str]:
    return set(conn.execute(sa.text(sql), params).scalars())


def test_registry_api_of_tenant_a_never_returns_b_models(pg, models) -> None:
    registry = ModelRegistry(pg.url("registry", with_password=True, user=APP_ROLE))  # as the product opens it
    with tenant_scope(A):
        assert {m.id for m in registry.list()} >= {models[A]}
        assert models[B] not in {m.id for m in registry.list()}
        with pytest.raises(UnknownModelError):  # a job of acme handed beta's model id
            registry.get(models[B])
        with pytest.raises(UnknownModelError):
            registry.resolve_for_generation(models[B], allow_unapproved=True)
        with pytest.raises(UnknownModelError):  # beta's model name is unknown to acme as well
            registry.latest(f"{B}-copula", status=None)
    registry.engine.dispose()


def test_query_that_forgets_where_tenant_returns_only_own_rows(app_engine, admin_engine, models) -> None:
    with admin_engine.connect() as conn:
        assert {models[A], models[B]} <= _ids(conn, "SELECT id FROM models")  # both are really there
    with tenant_scope(A), app_engine.connect() as conn:
        seen = _ids(conn, "SELECT id FROM models")
        assert models[A] in seen and models[B] not in seen
        assert set(conn.execute(sa.text("SELECT DISTINCT tenant_id FROM models")).scalars()) == {A}
        assert set(conn.execute(sa.text("SELECT DISTINCT tenant_id FROM status_changes")).scalars()) == {A}


def test_hand_written_select_of_b_rows_returns_nothing(app_engine, models) -> None:
    with tenant_scope(A), app_engine.connect() as conn:
        assert _ids(conn, "SELECT id FROM models WHERE tenant_id = :t", t=B) == set()
        assert _ids(conn, "SELECT id FROM models WHERE id = :i", i=models[B]) == set()
        assert _ids(conn, "SELECT model_id FROM status_changes WHERE model_id = :i", i=models[B]) == set()
        assert _ids(conn, "SELECT id FROM models WHERE tenant_id <> :t OR tenant_id IS NULL", t=A) == set()


def test_hand_written_update_and_delete_of_b_rows_change_nothing(app_engine, admin_engine, models) -> None:
    with tenant_scope(A), app_engine.begin() as conn:
        assert conn.execute(sa.text("UPDATE models SET name = 'stolen' WHERE id = :i"), {"i": models[B]}).rowcount == 0
        assert conn.execute(sa.text("UPDATE models SET name = 'stolen' WHERE tenant_id = :t"), {"t": B}).rowcount == 0
        assert conn.execute(sa.text("DELETE FROM status_changes WHERE model_id = :i"), {"i": models[B]}).rowcount == 0
        assert conn.execute(sa.text("DELETE FROM models WHERE id = :i"), {"i": models[B]}).rowcount == 0
    with admin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM models WHERE id = :i"), {"i": models[B]}).scalar_one() == f"{B}-copula"


def test_hand_written_insert_of_a_b_row_is_refused(app_engine) -> None:
    with tenant_scope(A), app_engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security"):
        conn.execute(sa.text(
            "INSERT INTO models (id, kind, name, trained_by, trained_at, training_data_sha256, parameters, "
            "artifact_uri, artifact_sha256, status, tenant_id) VALUES (:id, 'imputer', 'x', 'x', now(), :s, '{}', "
            "'lake:beta/x', :s, 'draft', :t)"), {"id": uuid.uuid4().hex, "s": SHA, "t": B})


def test_moving_own_row_to_b_is_refused(app_engine, models) -> None:
    with tenant_scope(A), app_engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security"):
        conn.execute(sa.text("UPDATE models SET tenant_id = :t WHERE id = :i"), {"t": B, "i": models[A]})


def test_session_that_never_set_the_tenant_sees_nothing(pg, app_engine, models) -> None:
    bare = sa.create_engine(pg.url("registry", with_password=True, user=APP_ROLE))  # no guard at all
    try:
        with bare.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar_one() == 0
    finally:
        bare.dispose()
    with app_engine.connect() as conn:  # guard installed, but no tenant_scope
        assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar_one() == 0
    with app_engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security|not-null"):
        conn.execute(sa.text("INSERT INTO privacy_spend (model_id, study, training_data_sha256, mechanism, epsilon, "
                             "delta, recorded_at) VALUES (:i, 's', :s, 'm', 1, 1e-6, now())"), {"i": models[A], "s": SHA})


def test_session_level_set_on_a_pooled_connection_does_not_leak_into_a_transaction(app_engine, models) -> None:
    with tenant_scope(A), app_engine.connect() as conn:
        conn.execute(sa.text("SET SESSION app.current_tenant = 'beta'"))  # survives the transaction on the pool
        conn.commit()
        assert _ids(conn, "SELECT id FROM models WHERE id = :i", i=models[B]) == set()
        conn.execute(sa.text("RESET app.current_tenant"))
        conn.commit()


@pytest.mark.parametrize("attempt", [
    "ALTER TABLE models DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE models NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON models",
    "ALTER POLICY tenant_isolation ON models USING (true)",
    "CREATE POLICY everything ON models USING (true)",
    "ALTER TABLE models OWNER TO trialsynth_app",
    "SET ROLE trialsynth_owner",
    "TRUNCATE models CASCADE",
    "DROP TABLE privacy_spend",
    "ALTER ROLE trialsynth_app BYPASSRLS",
    "CREATE TABLE copy_of_models AS SELECT * FROM models",
])
def test_app_role_cannot_disable_rls_or_act_as_owner(pg, attempt) -> None:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=APP_ROLE, password=pg.app_password, dbname="registry")
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.Error, match="must be owner|permission denied|must be member|must be superuser"):
            cur.execute(attempt)
    finally:
        conn.close()


def test_row_security_off_is_an_error_not_a_bypass(pg) -> None:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=APP_ROLE, password=pg.app_password, dbname="registry")
    try:
        with conn.cursor() as cur:
            cur.execute("SET row_security = off")
            with pytest.raises(psycopg2.Error, match="row-level security"):
                cur.execute("SELECT count(*) FROM models")
    finally:
        conn.close()


def test_catalog_says_force_rls_and_a_role_without_bypass(admin_engine) -> None:
    with admin_engine.connect() as conn:
        role = conn.execute(sa.text("SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = :r"),
                            {"r": APP_ROLE}).one()
        assert tuple(role) == (False, False, False)
        assert not conn.execute(sa.text("SELECT pg_has_role(:r, 'trialsynth_owner', 'MEMBER')"), {"r": APP_ROLE}).scalar()
        tables = conn.execute(sa.text(
            "SELECT relname, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner) FROM pg_class "
            "WHERE relname IN ('models', 'status_changes', 'privacy_spend')")).all()
        assert sorted((t[1], t[2], t[3]) for t in tables) == [(True, True, "trialsynth_owner")] * 3


@pytest.fixture(scope="module")
def api_engine(pg):
    """The API's tables in their own database of the stack's cluster, RLS applied as the API would."""
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", password=pg.superuser_password, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS tenancy_api_test")
        cur.execute("CREATE DATABASE tenancy_api_test")
    conn.close()
    report = apply_row_level_security(pg.superuser_url("tenancy_api_test"), API_TENANT_TABLES,
                                      metadata=api_store.metadata, shared_tables=API_SHARED_TABLES, app_role=APP_ROLE)
    assert report.added_columns == []  # the API tables carry `tenant` already
    engine = install_tenant_guard(sa.create_engine(pg.url("tenancy_api_test", with_password=True, user=APP_ROLE)))
    yield engine
    engine.dispose()


def test_api_jobs_of_b_are_invisible_to_a(api_engine) -> None:
    jobs = api_store.jobs_table
    now = api_store.now()
    for tenant in (A, B):
        with tenant_scope(tenant), api_engine.begin() as conn:
            conn.execute(jobs.insert().values(id=f"{tenant}-{uuid.uuid4().hex[:8]}", tenant=tenant, kind="train",
                                              status="queued", request={}, created_at=now, updated_at=now))
    with tenant_scope(A), api_engine.connect() as conn:
        assert set(conn.execute(sa.select(jobs.c.tenant)).scalars()) == {A}  # no WHERE tenant
        assert conn.execute(sa.select(jobs).where(jobs.c.tenant == B)).all() == []
    with tenant_scope(A), api_engine.begin() as conn:
        assert conn.execute(sa.update(jobs).where(jobs.c.tenant == B).values(status="canceled")).rowcount == 0
    with tenant_scope(A), api_engine.connect() as conn, pytest.raises(DBAPIError, match="row-level security"):
        conn.execute(api_store.usage_table.insert().values(tenant=B, day="2026-12-01", count=1))


def test_concurrent_requests_of_two_tenants_each_see_their_own(app_engine, models) -> None:
    seen: dict[str, set[str]] = {}

    def request(tenant: str) -> None:
        with tenant_scope(tenant):
            for _ in range(5):
                with app_engine.connect() as conn:
                    seen.setdefault(tenant, set()).update(conn.execute(sa.text("SELECT tenant_id FROM models")).scalars())

    threads = [threading.Thread(target=request, args=(t,)) for t in (A, B, A, B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {A: {A}, B: {B}}


def test_engine_bound_to_a_refuses_to_run_for_b(pg) -> None:
    engine = install_tenant_guard(sa.create_engine(pg.url("registry", with_password=True, user=APP_ROLE)), tenant=A)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_setting('app.current_tenant')")).scalar_one() == A
        with tenant_scope(B), pytest.raises(TenantContextError, match="bound to tenant 'acme'"), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------
# 2. The lake: per-tenant prefixes, and a job of acme handed a path of beta
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def lake(tmp_path) -> LakeResource:
    resource = LakeResource(data_dir=str(tmp_path / "data"))
    for tenant in (A, B):
        bronze = resource.lake_dir / tenant / "s1" / "bronze"
        bronze.mkdir(parents=True)
        (bronze / "dm.parquet").write_bytes(b"PAR1 " + tenant.encode())
    return resource


@pytest.mark.parametrize("path", [
    "{lake}/beta/s1/bronze/dm.parquet",  # absolute path of beta's file
    "beta/s1/bronze/dm.parquet",  # lake-relative
    "lake:beta/s1/bronze/dm.parquet",  # an API location
    "acme/../beta/s1/bronze/dm.parquet",  # climbing out of acme's folder
    "{raw}/beta/s1/drop1/v1/dm.csv",  # beta's raw zone
    "{lake}/_keycheck/beta/v1.canary",  # lake files outside any tenant folder
])
def test_job_of_acme_given_a_path_of_beta_fails(lake, path) -> None:
    path = path.format(lake=lake.lake_dir, raw=lake.raw_dir)
    with pytest.raises(TenantPathError, match="outside tenant 'acme'"):
        lake.tenant_path("acme|s1", path)


def test_paths_of_the_jobs_own_tenant_pass(lake) -> None:
    own = lake.lake_dir / A / "s1" / "bronze" / "dm.parquet"
    assert lake.tenant_path("acme|s1", own) == own.resolve()
    assert lake.tenant_path("acme|s1", "lake:acme/s1/bronze/dm.parquet") == own.resolve()
    assert lake.study_dir("acme|s1") == lake.lake_dir / A / "s1"


def test_write_table_cannot_climb_into_another_tenant(lake) -> None:
    import polars as pl

    with pytest.raises(TenantPathError):
        lake.write_table("acme|s1", "../../beta/s1/bronze/dm.parquet", pl.DataFrame({"x": [1]}))
    assert (lake.lake_dir / B / "s1" / "bronze" / "dm.parquet").read_bytes() == b"PAR1 beta"  # untouched


def test_symlink_planted_in_acme_folder_pointing_at_beta_fails(lake) -> None:
    planted = lake.lake_dir / A / "s1" / "bronze" / "ae.parquet"
    planted.symlink_to(lake.lake_dir / B / "s1" / "bronze" / "dm.parquet")
    with pytest.raises(TenantPathError):
        lake.read_bronze("acme|s1", "ae")
    (lake.lake_dir / A / "s2").symlink_to(lake.lake_dir / B / "s1", target_is_directory=True)
    with pytest.raises(TenantPathError):
        lake.study_dir("acme|s2")


# ----------------------------------------------------------------------------------------------
# 3. Encrypted raw objects: beta's envelope does not open for acme
# ----------------------------------------------------------------------------------------------
def test_encrypted_raw_object_of_beta_refused_for_acme(settings, tmp_path) -> None:
    service = KeyService(settings)
    source = tmp_path / "dm.csv"
    source.write_bytes(b"USUBJID,AGE\nB-001,54\n")
    beta_object = settings.raw_dir / B / "s1" / "drop1" / "v1" / "dm.csv"
    beta_object.parent.mkdir(parents=True)
    service.encrypt_file(source, beta_object, B, service.logical_path(beta_object))
    with pytest.raises(SecurityError, match="belongs to tenant 'beta'"), service.open_decrypted(beta_object, A) as fh:
        fh.read()
    copied = settings.raw_dir / A / "s1" / "drop1" / "v1" / "dm.csv"  # copied into acme's folder
    copied.parent.mkdir(parents=True)
    copied.write_bytes(beta_object.read_bytes())
    with pytest.raises(SecurityError), service.open_decrypted(copied, A) as fh:
        fh.read()
    with service.open_decrypted(beta_object, B) as fh:  # its own tenant still reads it
        assert fh.read() == source.read_bytes()


# ----------------------------------------------------------------------------------------------
# 4. ClickHouse
# ----------------------------------------------------------------------------------------------
def test_tenant_access_sql_parses_on_clickhouse(tmp_path) -> None:
    statements = {t: render_tenant_access(t, f"pw-{t}") for t in (A, B)}
    script = ("import chdb.session, json, sys\ns = chdb.session.Session()\n"
              "print(json.dumps([s.query('SELECT formatQuery({q:String})', 'TabSeparatedRaw', params={'q': q})"
              ".bytes().decode().strip() for q in json.load(sys.stdin)]))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(statements[A] + statements[B]),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    formatted = json.loads(done.stdout)
    assert len(formatted) == len(statements[A]) + len(statements[B])
    assert ("CREATE ROW POLICY OR REPLACE ts_tenant_acme_rows ON trialsynth.* AS PERMISSIVE FOR SELECT "
            "USING tenant_id = 'acme' TO ts_tenant_acme") in formatted
    assert "GRANT SELECT ON trialsynth.* TO ts_tenant_beta" in formatted
    # Superset's serving views and tables: the same grant and row condition
    assert ("CREATE ROW POLICY OR REPLACE ts_tenant_acme_serving_rows ON trialsynth_serving.* AS PERMISSIVE FOR "
            "SELECT USING tenant_id = 'acme' TO ts_tenant_acme") in formatted
    from infra.superset.warehouse import ServedWarehouse

    assert TenantAccess(A, "trialsynth").serving_database == ServedWarehouse(
        target="clickhouse", clickhouse_database="trialsynth").serving_database
    assert not any("beta" in s for s in statements[A])  # acme's block names nothing of beta


_CHDB_ATTACKS = {
    "select without WHERE": "SELECT DISTINCT tenant_id FROM trialsynth.mart_safety ORDER BY 1",
    "select WHERE tenant_id = beta": "SELECT count() FROM trialsynth.mart_safety WHERE tenant_id = 'beta'",
    "join two marts": "SELECT DISTINCT e.tenant_id FROM trialsynth.mart_enrollment e "
                      "JOIN trialsynth.mart_safety s USING (study_id)",
    "filter setting that would drop the policy": "SELECT DISTINCT tenant_id FROM trialsynth.mart_safety "
                                                 "SETTINGS additional_table_filters = {'trialsynth.mart_safety': '1'}",
    "another database": "SELECT count() FROM staging.raw_rows",
    "file() of the data folder": "SELECT count() FROM file('/etc/hostname', 'LineAsString')",
    "insert a row": "INSERT INTO trialsynth.mart_safety VALUES ('beta', 's9', 1)",
    "alter delete": "ALTER TABLE trialsynth.mart_safety DELETE WHERE 1",
    "drop table": "DROP TABLE trialsynth.mart_safety",
    "turn readonly off": "SET readonly = 0",
    "read the row policies": "SELECT count() FROM system.row_policies",
}

_CHDB_SCRIPT = r"""
import chdb.session, json, re, sys
path, config, attacks = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if config == "seed":
    s = chdb.session.Session(path)
    for q in ["CREATE DATABASE trialsynth", "CREATE DATABASE staging",
              "CREATE TABLE trialsynth.mart_safety (tenant_id String, study_id String, n Int32) ENGINE = MergeTree ORDER BY tenant_id",
              "CREATE TABLE trialsynth.mart_enrollment (tenant_id String, study_id String) ENGINE = MergeTree ORDER BY tenant_id",
              "CREATE TABLE staging.raw_rows (tenant_id String) ENGINE = MergeTree ORDER BY tenant_id",
              "INSERT INTO trialsynth.mart_safety VALUES ('acme', 's1', 1), ('beta', 's1', 2), ('beta', 's2', 3)",
              "INSERT INTO trialsynth.mart_enrollment VALUES ('acme', 's1'), ('beta', 's1')",
              "INSERT INTO staging.raw_rows VALUES ('beta')"]:
        s.query(q)
    print("{}")
    sys.exit()
s = chdb.session.Session(f"{path}?config-file={config}")
out = {}
for name, sql in attacks.items():
    try:
        out[name] = ["ok", s.query(sql, "TabSeparated").bytes().decode().split()]
    except Exception as exc:
        out[name] = ["error", (re.search(r"\((\w+)\)", str(exc)) or re.search("(.*)", str(exc))).group(1)]
print(json.dumps(out))
"""


def _chdb(path: Path, config: str, attacks: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHDB_SCRIPT, str(path), config, json.dumps(attacks)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_clickhouse_engine_enforces_acme_grants_and_row_policy(tmp_path) -> None:
    """chDB runs every query as its one user ``default``; configured as acme's role (users.xml form of
    tenant_access.sql), the ClickHouse engine itself enforces the grant and the row condition."""
    data = tmp_path / "chdb"
    _chdb(data, "seed", {})
    (tmp_path / "users.xml").write_text(users_xml(A, "trialsynth", ["mart_safety", "mart_enrollment"]))
    (tmp_path / "config.xml").write_text(f"<clickhouse><user_directories><users_xml><path>{tmp_path / 'users.xml'}"
                                         "</path></users_xml></user_directories></clickhouse>")
    got = _chdb(data, str(tmp_path / "config.xml"), _CHDB_ATTACKS)
    assert got["select without WHERE"] == ["ok", [A]]
    assert got["select WHERE tenant_id = beta"] == ["ok", ["0"]]
    assert got["join two marts"] == ["ok", [A]]
    assert got["filter setting that would drop the policy"] == ["ok", [A]]  # filters only add conditions
    for attempt in ("another database", "file() of the data folder", "insert a row", "alter delete", "drop table",
                    "read the row policies"):
        assert got[attempt] == ["error", "ACCESS_DENIED"], attempt
    assert got["turn readonly off"] == ["error", "READONLY"]
    assert TenantAccess(A, "trialsynth").condition == "tenant_id = 'acme'"  # the very text tenant_access.sql uses


def test_clickhouse_stand_in_admits_no_tenant_login_and_stores_no_users(stack) -> None:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    ch = stack.clickhouse
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED|516"):
        clickhouse_connect.get_client(host=ch.host, port=ch.port, username=TenantAccess(A, "trialsynth").user,
                                      password="anything")
    admin = clickhouse_connect.get_client(host=ch.host, port=ch.port, username=ch.user, password=ch.password)
    try:
        from trialsynth.tenancy.clickhouse import AccessManagementUnavailable

        with pytest.raises(AccessManagementUnavailable, match="writable access storage"):
            apply_tenant_access(admin, {A: "pw"})
    finally:
        admin.close()


@pytest.mark.skipif(not os.environ.get("TRIALSYNTH_TEST_CLICKHOUSE_URL"),
                    reason="needs a real ClickHouse server: TRIALSYNTH_TEST_CLICKHOUSE_URL=http://admin:pw@host:8123")
def test_real_clickhouse_server_tenant_user_sees_only_its_rows() -> None:
    """What the stand-in cannot show: the SQL statements themselves create users that log in and are bound."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    url = sa.make_url(os.environ["TRIALSYNTH_TEST_CLICKHOUSE_URL"].replace("http://", "clickhouse://"))
    admin = clickhouse_connect.get_client(host=url.host, port=url.port or 8123, username=url.username or "default",
                                          password=url.password or "")
    database = f"tenancy_test_{uuid.uuid4().hex[:8]}"
    admin.command(f"CREATE DATABASE {database}")
    try:
        admin.command(f"CREATE TABLE {database}.mart_safety (tenant_id String, n Int32) ENGINE = MergeTree ORDER BY n")
        admin.command(f"INSERT INTO {database}.mart_safety VALUES ('acme', 1), ('beta', 2)")
        apply_tenant_access(admin, {A: "pw-acme-1"}, database)
        tenant = clickhouse_connect.get_client(host=url.host, port=url.port or 8123,
                                               username=TenantAccess(A, database).user, password="pw-acme-1")
        assert tenant.query(f"SELECT DISTINCT tenant_id FROM {database}.mart_safety").result_rows == [(A,)]
        assert tenant.command(f"SELECT count() FROM {database}.mart_safety WHERE tenant_id = 'beta'") == 0
        for attempt in (f"INSERT INTO {database}.mart_safety VALUES ('beta', 3)", "SELECT count() FROM system.query_log",
                        "SELECT count() FROM system.row_policies"):
            with pytest.raises(DatabaseError):
                tenant.command(attempt)
    finally:
        admin.command(f"DROP DATABASE {database}")


# ----------------------------------------------------------------------------------------------
# 5. Serving: acme's serving file holds only acme, and its SQL cannot reach beta's file
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def serving_files(tmp_path):
    from trialsynth.tenancy.serving import publish_tenants

    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE mart_safety AS SELECT * FROM (VALUES ('acme', 's1', 'S01', 1), "
                    "('beta', 's1', 'S01', 2), ('beta', 's2', 'S09', 3)) t(tenant_id, study_id, site_id, n)")
        con.execute("CREATE TABLE mart_extra AS SELECT 'beta-secret' AS note")  # a mart without tenant_id
    reports = publish_tenants(warehouse, tmp_path / "serving", retries=0)
    assert set(reports) == {A, B} and "mart_extra" in reports[A].withheld
    return {t: r.serving_path for t, r in reports.items()}


def test_acme_serving_file_physically_holds_no_beta_row(serving_files) -> None:
    with duckdb.connect(str(serving_files[A]), read_only=True) as con:
        tables = con.execute("SELECT table_name FROM information_schema.columns WHERE column_name = 'tenant_id'").fetchall()
        assert tables
        for (table,) in tables:
            assert set(r[0] for r in con.execute(f'SELECT DISTINCT tenant_id FROM "{table}"').fetchall()) <= {A}, table
        assert con.execute("SELECT count(*) FROM mart_extra").fetchone()[0] == 0  # withheld, not leaked
    assert Path(serving_files[A]).read_bytes().find(b"beta") == -1  # not even in freed pages


@pytest.mark.parametrize("sql", [
    "ATTACH '{beta}' AS b (READ_ONLY)",
    "SELECT * FROM read_parquet('{beta}')",
    "SELECT * FROM '{beta}'",
    "SET enable_external_access = true",
    "COPY mart_safety TO '{beta}.csv'",
])
def test_sql_on_acme_serving_database_cannot_reach_beta_file(serving_files, sql) -> None:
    """What SQL Lab or a dataset's custom SQL would run, with the options of the URI Superset's database
    uses (duckdb_engine hands the URI's query parameters to ``duckdb.connect`` as its config)."""
    from infra.superset.bundle import serving_uri

    url = sa.make_url(serving_uri(serving_files[A]))
    config = {k: v for k, v in url.query.items() if k != "access_mode"}
    assert url.query["access_mode"] == "read_only" and config["enable_external_access"] == "false"
    with duckdb.connect(url.database, read_only=True, config=config) as con, \
            pytest.raises(duckdb.Error, match="disabled|Permission|read-only|Cannot enable"):
        con.execute(sql.format(beta=serving_files[B]))
