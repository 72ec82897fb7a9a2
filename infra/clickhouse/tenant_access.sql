-- Per-tenant read access to the warehouse (issue 12, "tenant isolation, proven").
--
-- One copy of this block per tenant, rendered by trialsynth.tenancy.clickhouse.render_tenant_access()
-- and applied by `make stack-up` (infra/stack) to a ClickHouse server whose admin has
-- access_management. The chDB stand-in of infra/clickhouse/ cannot store SQL-created users (no
-- writable access storage), so there it is skipped with a message; see docs/security.md.
-- Every statement is idempotent. Placeholders: {database} (the warehouse), {serving_database} (the
-- views and tables Superset reads, infra/superset/publish_clickhouse.py), {role}, {user}, {policy},
-- {serving_policy} (identifiers, back-quoted), {tenant} (a string literal), {password_sha256} (hex).
--
-- The tenant's role may only SELECT the warehouse and serving databases, and sees only rows whose
-- tenant_id is the tenant: each row policy covers every table and view of its database (`ON db.*`), so
-- one added later is covered too, and one without tenant_id cannot be read by a tenant at all (fail
-- closed). The serving views run as the invoker (ClickHouse's default for plain views), so the
-- warehouse's policy applies beneath them as well.
CREATE ROLE IF NOT EXISTS {role};
REVOKE ALL ON *.* FROM {role};
GRANT SELECT ON {database}.* TO {role};
CREATE ROW POLICY OR REPLACE {policy} ON {database}.* AS PERMISSIVE FOR SELECT USING tenant_id = {tenant} TO {role};
GRANT SELECT ON {serving_database}.* TO {role};
CREATE ROW POLICY OR REPLACE {serving_policy} ON {serving_database}.* AS PERMISSIVE FOR SELECT USING tenant_id = {tenant} TO {role};
-- The login: no grant of its own, only the role; it cannot change `readonly`.
CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{password_sha256}';
ALTER USER {user} IDENTIFIED WITH sha256_hash BY '{password_sha256}' DEFAULT DATABASE {database} SETTINGS readonly = 2 CONST;
REVOKE ALL ON *.* FROM {user};
GRANT {role} TO {user};
ALTER USER {user} DEFAULT ROLE {role};
