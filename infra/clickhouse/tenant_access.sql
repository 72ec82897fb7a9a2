-- Per-tenant read access to the warehouse (issue 12, "tenant isolation, proven").
--
-- One copy of this block per tenant, rendered by trialsynth.tenancy.clickhouse.render_tenant_access()
-- and applied by `make stack-up` (infra/stack) to a ClickHouse server whose admin has
-- access_management. The chDB stand-in of infra/clickhouse/ cannot store SQL-created users (no
-- writable access storage), so there it is skipped with a message; see docs/security.md.
-- Every statement is idempotent. Placeholders: {database} (the warehouse), {role}, {user},
-- {policy} (identifiers, back-quoted), {tenant} (a string literal), {password_sha256} (hex).
--
-- The tenant's role may only SELECT the warehouse database, and sees only rows whose tenant_id is the
-- tenant: the row policy covers every table of the database (`ON db.*`), so a table added later is
-- covered too, and a table without tenant_id cannot be read by a tenant at all (fail closed).
CREATE ROLE IF NOT EXISTS {role};
REVOKE ALL ON *.* FROM {role};
GRANT SELECT ON {database}.* TO {role};
CREATE ROW POLICY OR REPLACE {policy} ON {database}.* AS PERMISSIVE FOR SELECT USING tenant_id = {tenant} TO {role};
-- The login: no grant of its own, only the role; it cannot change `readonly`.
CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{password_sha256}';
ALTER USER {user} IDENTIFIED WITH sha256_hash BY '{password_sha256}' DEFAULT DATABASE {database} SETTINGS readonly = 2 CONST;
REVOKE ALL ON *.* FROM {user};
GRANT {role} TO {user};
ALTER USER {user} DEFAULT ROLE {role};
