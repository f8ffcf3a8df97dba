//! PostgreSQL migrations, forward only, tracked in `herald_migrations` and run
//! under an advisory lock so several processes starting at once migrate once.

use sqlx::PgPool;

use super::pg;
use crate::StoreResult;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    retry_policy TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    config TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX endpoints_tenant ON endpoints (tenant_id, deleted, id);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT,
    context TEXT,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE TABLE deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT,
    target TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    attempt_base INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT,
    dead_reason TEXT,
    dead_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_owner ON deliveries (lease_owner, seq) WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_unowned ON deliveries (seq) WHERE status IN ('pending', 'delivering') AND lease_owner IS NULL;
CREATE INDEX deliveries_endpoint_open ON deliveries (endpoint_id, seq) WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_tenant_status ON deliveries (tenant_id, status, id);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL
);
CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT,
    attempt INTEGER NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    response_status INTEGER,
    response_headers TEXT NOT NULL,
    response_body TEXT,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
CREATE INDEX attempts_message ON attempts (message_id);
CREATE INDEX attempts_tenant ON attempts (tenant_id, id);
"#,
    // Endpoint configs and ad-hoc targets are sealed from here on: the URLs that
    // queries show sit beside them.
    r#"
ALTER TABLE endpoints ADD COLUMN url TEXT;
ALTER TABLE deliveries ADD COLUMN target_url TEXT;
"#,
    r#"
ALTER TABLE attempts ADD COLUMN request_body TEXT;
"#,
    r#"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_tenant ON tokens (tenant_id, id);
"#,
    // An endpoint's open deliveries by due time, for paging a backlog into the
    // scheduler (`deliveries_endpoint_open` serves commit order); its dead ones,
    // counted by the dashboard.
    r#"
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at, seq)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_dead ON deliveries (endpoint_id) WHERE status = 'dead';
"#,
    // The message list filtered by event type, or by the status of a delivery, walks
    // an index of exactly what it shows, newest first.
    r#"
CREATE INDEX messages_event_type ON messages (tenant_id, event_type, id);
CREATE INDEX deliveries_tenant_message ON deliveries (tenant_id, status, message_id);
"#,
    // The open ad-hoc callbacks to one origin by due time, for paging their
    // backlog the same way (`ORIGINS` fills the column for rows already there).
    r#"
ALTER TABLE deliveries ADD COLUMN target_origin TEXT;
CREATE INDEX deliveries_origin_due ON deliveries (target_origin, next_attempt_at, seq)
    WHERE status IN ('pending', 'delivering') AND endpoint_id IS NULL;
"#,
    // Every index a delivery's insert and outcome touch costs work in each batch:
    // a tenant's counts by status come from `deliveries_tenant_message`, and its
    // dead letters (few, never changing once dead) get a small index of their own;
    // a message's attempts are found through its deliveries.
    r#"
DROP INDEX deliveries_tenant_status;
CREATE INDEX deliveries_tenant_dead ON deliveries (tenant_id, id) WHERE status = 'dead';
DROP INDEX attempts_message;
"#,
    // A body sent as the message's payload is kept once, with the message.
    r#"
ALTER TABLE attempts ADD COLUMN body_from_payload BOOLEAN NOT NULL DEFAULT false;
"#,
    // Every process keeps tenants, endpoints and found API tokens in memory: each
    // change, whichever process makes it, is announced on the schema's config
    // channel at commit.
    r#"
CREATE FUNCTION herald_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('herald_config_' || current_schema(),
            json_build_object('tenant', r.id)::text);
    ELSIF TG_TABLE_NAME = 'tokens' THEN
        PERFORM pg_notify('herald_config_' || current_schema(),
            json_build_object('tenant', r.tenant_id, 'token', r.id)::text);
    ELSE
        PERFORM pg_notify('herald_config_' || current_schema(),
            json_build_object('tenant', r.tenant_id, 'endpoint', r.id)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION herald_config_changed();
CREATE TRIGGER endpoints_changed AFTER INSERT OR UPDATE OR DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION herald_config_changed();
CREATE TRIGGER tokens_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION herald_config_changed();
"#,
];

/// The channels of a schema: work nobody owns yet, and changed tenants, endpoints
/// and tokens.
pub(crate) fn channels(schema: &str) -> (String, String) {
    (
        format!("herald_work_{schema}"),
        format!("herald_config_{schema}"),
    )
}

/// The migration that adds `target_origin`, counted from 1.
const ORIGINS: usize = 7;

/// Advisory lock keys herald uses.
pub(crate) const MIGRATION_LOCK: i64 = 0x6865_7261_6c64_0001;
/// Held by every ingest transaction that delivers to an ordered endpoint, from its
/// first delivery insert to its commit, so those deliveries' `seq`s follow commit
/// order across processes. (Order among other deliveries matters to no one.)
pub(crate) const INGEST_LOCK: i64 = 0x6865_7261_6c64_0002;

pub(crate) async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(pg)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS herald_migrations (version INTEGER PRIMARY KEY)")
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM herald_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(pg)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        for statement in statements(sql) {
            sqlx::query(statement).execute(&mut *tx).await.map_err(pg)?;
        }
        if i + 1 == ORIGINS {
            fill_origins(&mut tx).await?;
        }
        sqlx::query("INSERT INTO herald_migrations (version) VALUES ($1)")
            .bind(i as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(())
}

/// A migration's statements: split at `;`, except inside `$$`-quoted bodies.
fn statements(sql: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, part) in sql.match_indices(['$', ';']) {
        match part {
            "$" if sql[i..].starts_with("$$") && !sql[..i].ends_with('$') => quoted = !quoted,
            ";" if !quoted => {
                found.push(sql[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    found.push(sql[start..].trim());
    found.retain(|s| !s.is_empty());
    found
}

/// Sets `target_origin` on the open ad-hoc deliveries made before it existed.
async fn fill_origins(tx: &mut sqlx::PgConnection) -> StoreResult<()> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, target_url FROM deliveries WHERE endpoint_id IS NULL \
         AND status IN ('pending', 'delivering') AND target_url IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(pg)?;
    let (seqs, origins): (Vec<i64>, Vec<String>) = rows
        .into_iter()
        .map(|(seq, url)| (seq, herald_core::network::origin(&url)))
        .unzip();
    sqlx::query(
        "UPDATE deliveries d SET target_origin = v.origin \
         FROM UNNEST($1::int8[], $2::text[]) AS v(seq, origin) WHERE d.seq = v.seq",
    )
    .bind(&seqs)
    .bind(&origins)
    .execute(&mut *tx)
    .await
    .map_err(pg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_split_at_semicolons_outside_dollar_quotes() {
        let sql = "CREATE TABLE a (x INT);\nCREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n    RETURN NULL;\nEND\n$$;\n CREATE INDEX i ON a (x) ;\n";
        assert_eq!(
            statements(sql),
            [
                "CREATE TABLE a (x INT)",
                "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n    RETURN NULL;\nEND\n$$",
                "CREATE INDEX i ON a (x)",
            ]
        );
    }
}
