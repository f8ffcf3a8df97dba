//! The embedded SQLite backend: one file in WAL mode, one writer thread that
//! group-commits (see [`writer`]), and a small pool of read connections used from
//! blocking threads so reads never wait on the writer.

mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use self::rows::{to_json, Conditions, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, MESSAGE_COLUMNS};
use self::writer::Writer;
use crate::*;

const OPEN: &str = "('pending', 'delivering')";

pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -16000;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = connect(&path)?;
        schema::migrate(&conn)?;
        let writer = Writer::spawn(conn)
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            path,
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection in a blocking thread.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => connect(&path)?,
            };
            let result = work(&conn);
            let mut idle = readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < 8 {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

fn open_delivery_ids(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<DeliveryId>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let ids = stmt
        .query_map(params, |r| r.get::<_, String>(0))?
        .map(|r| r.map(DeliveryId::from_stored))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

fn load_endpoint(conn: &Connection, id: &str) -> StoreResult<Option<Endpoint>> {
    let config: Option<String> = conn
        .prepare_cached("SELECT config FROM endpoints WHERE id = ?1 AND deleted = 0")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    config
        .map(|c| rows::json(&c).map_err(StoreError::from))
        .transpose()
}

fn save_endpoint(conn: &Connection, endpoint: &Endpoint) -> StoreResult<()> {
    let changed = conn
        .prepare_cached("UPDATE endpoints SET config = ?2 WHERE id = ?1 AND deleted = 0")?
        .execute(params![endpoint.id.as_str(), to_json(endpoint)])?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn insert_delivery(conn: &Connection, d: &mut Delivery, now: Millis) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (id, message_id, tenant_id, endpoint_id, target, status, attempts, \
         attempt_base, next_attempt_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        d.id.as_str(),
        d.message_id.as_str(),
        d.tenant_id.as_str(),
        d.endpoint_id.as_ref().map(|e| e.as_str()),
        d.target.as_ref().map(to_json),
        d.status.as_str(),
        d.attempts,
        d.attempt_base,
        d.next_attempt_at,
        now,
    ])?;
    d.seq = conn.last_insert_rowid();
    Ok(())
}

/// Dead-letters every open delivery of an endpoint; returns their ids.
fn dead_letter_endpoint(
    conn: &Connection,
    endpoint_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<DeliveryId>> {
    open_delivery_ids(
        conn,
        &format!(
            "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, dead_reason = ?2, \
             last_error = COALESCE(last_error, ?2), dead_at = ?3, updated_at = ?3 \
             WHERE endpoint_id = ?1 AND status IN {OPEN} RETURNING id"
        ),
        params![endpoint_id, reason, now],
    )
}

fn disable(
    conn: &Connection,
    endpoint_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<DeliveryId>> {
    let mut endpoint = load_endpoint(conn, endpoint_id)?.ok_or(StoreError::NotFound)?;
    endpoint.active = false;
    endpoint.disabled_reason = Some(reason.to_string());
    endpoint.updated_at = from_millis(now);
    save_endpoint(conn, &endpoint)?;
    dead_letter_endpoint(conn, endpoint_id, reason, now)
}

fn select_deliveries(
    conn: &Connection,
    where_sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE {where_sql}"
    ))?;
    let rows = stmt
        .query_map(params, rows::delivery)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.writer.write(|conn| Ok(schema::migrate(conn)?)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        self.writer
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO tenants (id, name, retry_policy, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![
                        tenant.id.as_str(),
                        tenant.name,
                        tenant.retry_policy.as_ref().map(to_json),
                        tenant.created_at,
                        tenant.updated_at
                    ])?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("tenant {} exists", tenant.id)));
                }
                Ok(())
            })
            .await
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, name, retry_policy, created_at, updated_at FROM tenants WHERE id = ?1")?
                .query_row([id], rows::tenant)
                .optional()?)
        })
        .await
    }

    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>> {
        self.read(move |conn| {
            let mut c = Conditions::default();
            c.add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT id, name, retry_policy, created_at, updated_at FROM tenants WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                rows::limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::tenant)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows::paginate(found, &page, |t| t.id.to_string()))
        })
        .await
    }

    async fn update_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        self.writer
            .write(move |conn| {
                let changed = conn
                    .prepare_cached("UPDATE tenants SET name = ?2, retry_policy = ?3, updated_at = ?4 WHERE id = ?1")?
                    .execute(params![
                        tenant.id.as_str(),
                        tenant.name,
                        tenant.retry_policy.as_ref().map(to_json),
                        tenant.updated_at
                    ])?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
            .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<Vec<DeliveryId>> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                if conn.execute("DELETE FROM tenants WHERE id = ?1", [&id])? == 0 {
                    return Err(StoreError::NotFound);
                }
                let open = open_delivery_ids(
                    conn,
                    &format!("SELECT id FROM deliveries WHERE tenant_id = ?1 AND status IN {OPEN}"),
                    [&id],
                )?;
                for table in ["attempts", "deliveries", "messages", "endpoints"] {
                    conn.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [&id])?;
                }
                Ok(open)
            })
            .await
    }

    async fn create_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        self.writer
            .write(move |conn| {
                let tenant_exists = conn
                    .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
                    .exists([endpoint.tenant_id.as_str()])?;
                if !tenant_exists {
                    return Err(StoreError::NotFound);
                }
                conn.prepare_cached(
                    "INSERT INTO endpoints (id, tenant_id, config, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    endpoint.id.as_str(),
                    endpoint.tenant_id.as_str(),
                    to_json(&endpoint),
                    to_millis(endpoint.created_at)
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_endpoint(&self, id: &EndpointId) -> StoreResult<Option<Endpoint>> {
        let id = id.to_string();
        self.read(move |conn| load_endpoint(conn, &id)).await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut c = Conditions::default();
            c.add("tenant_id = ?", tenant)
                .fixed("deleted = 0")
                .add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT config FROM endpoints WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                rows::limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), |r| {
                    rows::json::<Endpoint>(&r.get::<_, String>(0)?)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows::paginate(found, &page, |e| e.id.to_string()))
        })
        .await
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Endpoint>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let found = conn
                .prepare_cached(
                    "SELECT config FROM endpoints WHERE tenant_id = ?1 AND deleted = 0 ORDER BY id",
                )?
                .query_map([tenant], |r| {
                    rows::json::<Endpoint>(&r.get::<_, String>(0)?)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(found)
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        self.writer
            .write(move |conn| save_endpoint(conn, &endpoint))
            .await
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> StoreResult<Vec<DeliveryId>> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                let changed = conn
                    .prepare_cached("UPDATE endpoints SET deleted = 1 WHERE id = ?1 AND deleted = 0")?
                    .execute([&id])?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                open_delivery_ids(
                    conn,
                    &format!(
                        "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, \
                         last_error = 'endpoint deleted' WHERE endpoint_id = ?1 AND status IN {OPEN} RETURNING id"
                    ),
                    [&id],
                )
            })
            .await
    }

    async fn disable_endpoint(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.writer
            .write(move |conn| disable(conn, &id, &reason, now))
            .await
    }

    async fn ingest(&self, ingest: Ingest) -> StoreResult<IngestResult> {
        self.writer
            .write(move |conn| {
                let Ingest { message: m, mut deliveries } = ingest;
                if let Some(key) = &m.idempotency_key {
                    let existing: Option<String> = conn
                        .prepare_cached("SELECT id FROM messages WHERE tenant_id = ?1 AND idempotency_key = ?2")?
                        .query_row(params![m.tenant_id.as_str(), key], |r| r.get(0))
                        .optional()?;
                    if let Some(id) = existing {
                        return Ok(IngestResult::Duplicate(MessageId::from_stored(id)));
                    }
                }
                conn.prepare_cached(&format!(
                    "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))?
                .execute(params![
                    m.id.as_str(),
                    m.tenant_id.as_str(),
                    m.event_type,
                    m.payload,
                    (!m.headers.is_empty()).then(|| to_json(&m.headers)),
                    m.context.as_ref().map(to_json),
                    m.idempotency_key,
                    m.created_at
                ])?;
                for d in &mut deliveries {
                    insert_delivery(conn, d, m.created_at)?;
                }
                Ok(IngestResult::Created(deliveries))
            })
            .await
    }

    async fn get_message(&self, id: &MessageId) -> StoreResult<Option<StoredMessage>> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"
                ))?
                .query_row([id], rows::message)
                .optional()?)
        })
        .await
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        filter: MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMessage>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut c = Conditions::default();
            c.add("tenant_id = ?", tenant)
                .add_opt("event_type = ?", filter.event_type)
                .add_opt("created_at >= ?", filter.since)
                .add_opt("created_at < ?", filter.until)
                .add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                rows::limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows::paginate(found, &page, |m| m.id.to_string()))
        })
        .await
    }

    async fn message_deliveries(&self, id: &MessageId) -> StoreResult<Vec<Delivery>> {
        let id = id.to_string();
        self.read(move |conn| select_deliveries(conn, "d.message_id = ?1 ORDER BY d.seq", [id]))
            .await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        let id = id.to_string();
        self.read(move |conn| Ok(select_deliveries(conn, "d.id = ?1", [id])?.pop()))
            .await
    }

    async fn add_deliveries(&self, mut deliveries: Vec<Delivery>) -> StoreResult<Vec<Delivery>> {
        self.writer
            .write(move |conn| {
                for d in &mut deliveries {
                    let now = d.created_at;
                    insert_delivery(conn, d, now)?;
                }
                Ok(deliveries)
            })
            .await
    }

    async fn cancel_deliveries(
        &self,
        ids: &[DeliveryId],
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>> {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        self.writer
            .write(move |conn| {
                let mut cancelled = Vec::new();
                for id in ids {
                    cancelled.extend(open_delivery_ids(
                        conn,
                        &format!(
                            "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, updated_at = ?2 \
                             WHERE id = ?1 AND status IN {OPEN} RETURNING id"
                        ),
                        params![id, now],
                    )?);
                }
                Ok(cancelled)
            })
            .await
    }

    async fn record_outcome(&self, outcome: Outcome) -> StoreResult<OutcomeApplied> {
        self.writer
            .write(move |conn| apply_outcome(conn, outcome))
            .await
    }

    async fn open_deliveries(
        &self,
        after_seq: i64,
        up_to_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        self.read(move |conn| {
            select_deliveries(
                conn,
                &format!(
                    "d.status IN {OPEN} AND d.seq > ?1 AND d.seq <= ?2 ORDER BY d.seq LIMIT ?3"
                ),
                params![after_seq, up_to_seq, limit],
            )
        })
        .await
    }

    async fn recover_in_flight(&self) -> StoreResult<i64> {
        self.writer
            .write(|conn| {
                conn.execute(
                    "UPDATE deliveries SET status = 'pending' WHERE status = 'delivering'",
                    [],
                )?;
                Ok(
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM deliveries", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
    }

    async fn list_attempts(
        &self,
        tenant: &TenantId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut c = Conditions::default();
            c.add("tenant_id = ?", tenant)
                .add_opt("message_id = ?", filter.message_id.map(|i| i.to_string()))
                .add_opt("endpoint_id = ?", filter.endpoint_id.map(|i| i.to_string()))
                .add_opt("delivery_id = ?", filter.delivery_id.map(|i| i.to_string()))
                .add_opt("outcome = ?", filter.outcome)
                .add_opt("created_at >= ?", filter.since)
                .add_opt("created_at < ?", filter.until)
                .add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                rows::limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::attempt)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows::paginate(found, &page, |a| a.id.to_string()))
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        filter: DeadLetterFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut c = dead_conditions(tenant, &filter);
            c.add_opt("d.id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS}, m.event_type, \
                 COALESCE(json_extract(d.target, '$.url'), json_extract(e.config, '$.url'), ''), \
                 (d.endpoint_id IS NULL OR e.deleted = 0) \
                 FROM deliveries d JOIN messages m ON m.id = d.message_id \
                 LEFT JOIN endpoints e ON e.id = d.endpoint_id \
                 WHERE {} ORDER BY d.id DESC LIMIT {}",
                c.sql(),
                rows::limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), |r| {
                    Ok(DeadLetter {
                        delivery: rows::delivery(r)?,
                        event_type: r.get(14)?,
                        url: r.get(15)?,
                        replayable: r.get::<_, Option<bool>>(16)?.unwrap_or(false),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows::paginate(found, &page, |d| d.delivery.id.to_string()))
        })
        .await
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
        now: Millis,
    ) -> StoreResult<Vec<Delivery>> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |conn| {
                let mut c = match &selector {
                    ReplaySelector::One(id) => {
                        let found = select_deliveries(conn, "d.id = ?1 AND d.tenant_id = ?2", params![id.as_str(), tenant])?;
                        let Some(d) = found.first() else {
                            return Err(StoreError::NotFound);
                        };
                        if d.status != herald_core::delivery::DeliveryStatus::Dead {
                            return Err(StoreError::Conflict(format!("delivery {id} is {}, not dead", d.status.as_str())));
                        }
                        let mut c = Conditions::default();
                        c.add("d.id = ?", id.to_string()).add("d.tenant_id = ?", tenant.clone()).fixed("d.status = 'dead'");
                        c
                    }
                    ReplaySelector::Bulk(filter) => dead_conditions(tenant.clone(), filter),
                };
                c.fixed("(d.endpoint_id IS NULL OR d.endpoint_id IN (SELECT id FROM endpoints WHERE deleted = 0))");
                let sql = format!(
                    "UPDATE deliveries AS d SET status = 'pending', attempt_base = attempts, next_attempt_at = {now}, \
                     dead_reason = NULL, dead_at = NULL, updated_at = {now} WHERE {} RETURNING seq",
                    c.sql()
                );
                let seqs = conn
                    .prepare(&sql)?
                    .query_map(params_from_iter(c.params), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                if seqs.is_empty() && matches!(selector, ReplaySelector::One(_)) {
                    return Err(StoreError::Conflict("the endpoint of this dead letter was deleted".into()));
                }
                let mut replayed = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    replayed.extend(select_deliveries(conn, "d.seq = ?1", [seq])?);
                }
                Ok(replayed)
            })
            .await
    }
}

fn dead_conditions(tenant: String, filter: &DeadLetterFilter) -> Conditions {
    let mut c = Conditions::default();
    c.add("d.tenant_id = ?", tenant)
        .fixed("d.status = 'dead'")
        .add_opt(
            "d.endpoint_id = ?",
            filter.endpoint_id.as_ref().map(|i| i.to_string()),
        )
        .add_opt("d.dead_at >= ?", filter.since)
        .add_opt("d.dead_at < ?", filter.until);
    c
}

fn apply_outcome(conn: &Connection, outcome: Outcome) -> StoreResult<OutcomeApplied> {
    let Outcome {
        attempt: a,
        next,
        now,
    } = outcome;
    conn.prepare_cached(&format!(
        "INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        a.id.as_str(),
        a.delivery_id.as_str(),
        a.message_id.as_str(),
        a.tenant_id.as_str(),
        a.endpoint_id.as_ref().map(|e| e.as_str()),
        a.attempt,
        a.method,
        a.url,
        to_json(&a.request_headers),
        a.response_status,
        to_json(&a.response_headers),
        a.response_body,
        a.duration_ms as i64,
        a.outcome,
        a.error_kind,
        a.error,
        a.created_at
    ])?;
    let id = a.delivery_id.as_str();
    let guard = format!("WHERE id = ?1 AND status IN {OPEN}");
    let changed = match &next {
        NextState::Succeeded => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET status = 'succeeded', attempts = ?2, next_attempt_at = NULL, \
                 last_error = NULL, updated_at = ?3 {guard}"
            ))?
            .execute(params![id, a.attempt, now])?,
        NextState::Retry { at, error } => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET status = 'pending', attempts = ?2, next_attempt_at = ?3, \
                 last_error = ?4, updated_at = ?5 {guard}"
            ))?
            .execute(params![id, a.attempt, at, error, now])?,
        NextState::Dead { reason } | NextState::DisableEndpoint { reason, .. } => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET status = 'dead', attempts = ?2, next_attempt_at = NULL, \
                 last_error = ?3, dead_reason = ?3, dead_at = ?4, updated_at = ?4 {guard}"
            ))?
            .execute(params![id, a.attempt, reason, now])?,
    };
    if changed == 0 {
        return Ok(OutcomeApplied::Stale);
    }
    let also_dead = match &next {
        NextState::DisableEndpoint {
            endpoint_id,
            reason,
        } => disable(conn, endpoint_id.as_str(), reason, now)?,
        _ => Vec::new(),
    };
    Ok(OutcomeApplied::Applied { also_dead })
}
