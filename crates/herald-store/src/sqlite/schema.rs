//! SQLite migrations, forward only, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    retry_policy TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    config TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
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
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT,
    target TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    attempt_base INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error TEXT,
    dead_reason TEXT,
    dead_at INTEGER,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_owner ON deliveries (lease_owner, seq) WHERE status IN ('pending', 'delivering');
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
);
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_open ON deliveries (seq) WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, status);
CREATE INDEX deliveries_tenant_status ON deliveries (tenant_id, status, id);
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
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error TEXT,
    created_at INTEGER NOT NULL
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
    // An endpoint's open deliveries by due time and by commit order (the rowid), for
    // paging a backlog into the scheduler.
    r#"
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_endpoint_open ON deliveries (endpoint_id)
    WHERE status IN ('pending', 'delivering');
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
CREATE INDEX deliveries_origin_due ON deliveries (target_origin, next_attempt_at)
    WHERE status IN ('pending', 'delivering') AND endpoint_id IS NULL;
"#,
    // Every index a delivery's insert and outcome touch costs pages in each group
    // commit, so the hot path keeps only those its reads need: the open set is
    // `deliveries_owner`'s, a tenant's or an endpoint's counts by status come from
    // `deliveries_tenant_message` and `deliveries_endpoint_open`, and the dead
    // (few, and never changing once dead) get small indexes of their own; a
    // message's attempts are found through its deliveries.
    r#"
DROP INDEX deliveries_open;
DROP INDEX deliveries_endpoint;
DROP INDEX deliveries_tenant_status;
CREATE INDEX deliveries_dead ON deliveries (tenant_id, id) WHERE status = 'dead';
CREATE INDEX deliveries_dead_endpoint ON deliveries (endpoint_id) WHERE status = 'dead';
DROP INDEX attempts_message;
"#,
    // A body sent as the message's payload is kept once, with the message.
    r#"
ALTER TABLE attempts ADD COLUMN body_from_payload INTEGER NOT NULL DEFAULT 0;
"#,
    // Two fewer indexes for every ingest to write: messages are found by tenant
    // (`messages_tenant`, now unique) and no longer by id alone, and a message's
    // deliveries through `deliveries_tenant_message`, one probe per status. The
    // table is made again without its primary key's index.
    r#"
CREATE TABLE messages_by_tenant (
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT,
    context TEXT,
    idempotency_key TEXT,
    created_at INTEGER NOT NULL
);
INSERT INTO messages_by_tenant
    SELECT id, tenant_id, event_type, payload, headers, context, idempotency_key, created_at
    FROM messages ORDER BY rowid;
DROP TABLE messages;
ALTER TABLE messages_by_tenant RENAME TO messages;
CREATE UNIQUE INDEX messages_tenant ON messages (tenant_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_event_type ON messages (tenant_id, event_type, id);
DROP INDEX deliveries_message;
"#,
    // Attempts are kept in the order they are found by, tenant and id, with no
    // rowid: every recorded attempt writes two b-trees (this one and
    // `attempts_delivery`) instead of four.
    r#"
CREATE TABLE attempts_by_tenant (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    endpoint_id TEXT,
    attempt INTEGER NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    request_body TEXT,
    body_from_payload INTEGER NOT NULL DEFAULT 0,
    response_status INTEGER,
    response_headers TEXT NOT NULL,
    response_body TEXT,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
INSERT INTO attempts_by_tenant
    SELECT tenant_id, id, delivery_id, message_id, endpoint_id, attempt, method, url,
        request_headers, request_body, body_from_payload, response_status, response_headers,
        response_body, duration_ms, outcome, error_kind, error, created_at
    FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_by_tenant RENAME TO attempts;
CREATE INDEX attempts_delivery ON attempts (delivery_id);
"#,
];

/// The migration that adds `target_origin`, counted from 1.
const ORIGINS: usize = 7;

pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Runs the migrations up to `last` (counted from 1).
fn migrate_to(conn: &Connection, last: usize) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(last).skip(version) {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql};"))?;
        let filled = if i + 1 == ORIGINS {
            fill_origins(conn)
        } else {
            Ok(())
        };
        match filled {
            Ok(()) => conn.execute_batch(&format!("PRAGMA user_version = {}; COMMIT;", i + 1))?,
            Err(e) => {
                conn.execute_batch("ROLLBACK")?;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sets `target_origin` on the open ad-hoc deliveries made before it existed.
fn fill_origins(conn: &Connection) -> rusqlite::Result<()> {
    let rows = conn
        .prepare(
            "SELECT seq, target_url FROM deliveries WHERE endpoint_id IS NULL \
             AND status IN ('pending', 'delivering') AND target_url IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut update = conn.prepare("UPDATE deliveries SET target_origin = ?2 WHERE seq = ?1")?;
    for (seq, url) in rows {
        update.execute(rusqlite::params![seq, herald_core::network::origin(&url)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migration that makes `messages` again without the index of its ids.
    const BY_TENANT: usize = 10;
    /// The migration that keeps `attempts` by tenant and id, without a rowid.
    const ATTEMPTS_BY_TENANT: usize = 11;

    fn indexes(conn: &Connection, table: &str) -> Vec<String> {
        conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name",
        )
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn attempts_survive_being_kept_by_tenant() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, ATTEMPTS_BY_TENANT - 1).unwrap();
        let insert = "INSERT INTO attempts (id, delivery_id, message_id, tenant_id, endpoint_id, attempt, \
                      method, url, request_headers, request_body, body_from_payload, response_status, \
                      response_headers, response_body, duration_ms, outcome, error_kind, error, created_at) \
                      VALUES ('att_1', 'dlv_1', 'msg_1', 'acme', 'ep_1', 2, 'POST', 'http://x/', '{}', \
                      NULL, 1, 500, '{\"a\":\"b\"}', 'no', 12, 'retry', 'status', 'HTTP 500', 7)";
        conn.execute(insert, []).unwrap();
        migrate(&conn).unwrap();

        let kept: (String, i64, i64, String, String, i64) = conn
            .query_row(
                "SELECT delivery_id, attempt, body_from_payload, response_headers, error, created_at \
                 FROM attempts WHERE tenant_id = 'acme' AND id = 'att_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        assert_eq!(
            kept,
            (
                "dlv_1".into(),
                2,
                1,
                "{\"a\":\"b\"}".into(),
                "HTTP 500".into(),
                7
            )
        );
        assert!(
            conn.execute(insert, []).is_err(),
            "(tenant, id) stays unique"
        );
        assert_eq!(indexes(&conn, "attempts"), ["attempts_delivery"]);
    }

    #[test]
    fn messages_survive_being_made_again_without_an_index_of_ids() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, BY_TENANT - 1).unwrap();
        let insert = "INSERT INTO messages (id, tenant_id, event_type, payload, idempotency_key, created_at) \
                      VALUES ('msg_1', 'acme', 'order.paid', '{\"n\":1}', 'k1', 7)";
        conn.execute(insert, []).unwrap();
        migrate(&conn).unwrap();

        let kept: (String, String, i64) = conn
            .query_row(
                "SELECT payload, idempotency_key, created_at FROM messages \
                 WHERE tenant_id = 'acme' AND id = 'msg_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, ("{\"n\":1}".into(), "k1".into(), 7));
        assert!(
            conn.execute(insert, []).is_err(),
            "(tenant, id) stays unique"
        );
        assert_eq!(
            indexes(&conn, "messages"),
            [
                "messages_event_type",
                "messages_idempotency",
                "messages_tenant"
            ]
        );
    }
}
