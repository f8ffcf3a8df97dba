//! Messages, deliveries, attempts and dead letters on SQLite.

use async_trait::async_trait;
use herald_core::delivery::DeliveryStatus;
use herald_core::{DeliveryId, MessageId, TenantId};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::rows::{self, to_json, Conditions, ATTEMPT_READ, DELIVERY_COLUMNS, MESSAGE_COLUMNS};
use super::{delivery_ids, select_deliveries, SqliteStore, ANY_STATUS, OPEN};
use crate::crypto::MasterKey;
use crate::*;

/// An ad-hoc target's stored columns (sealed target, origin), made before the write
/// reaches the writer thread, which every ingest waits on.
struct TargetColumns {
    sealed: Option<String>,
    origin: Option<String>,
}

fn target_columns(key: &MasterKey, deliveries: &[Delivery]) -> Vec<TargetColumns> {
    deliveries
        .iter()
        .map(|d| TargetColumns {
            sealed: d.target.as_ref().map(|t| key.seal_json(t)),
            origin: d
                .target
                .as_ref()
                .map(|t| herald_core::network::origin(&t.url)),
        })
        .collect()
}

fn insert_delivery(
    conn: &Connection,
    d: &mut Delivery,
    target: &TargetColumns,
    owner: Option<&str>,
    now: Millis,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (id, message_id, tenant_id, endpoint_id, target, status, attempts, \
         attempt_base, next_attempt_at, lease_owner, lease_until, target_url, target_origin, created_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, ?14, ?11, ?11)",
    )?
    .execute(params![
        d.id.as_str(),
        d.message_id.as_str(),
        d.tenant_id.as_str(),
        d.endpoint_id.as_ref().map(|e| e.as_str()),
        target.sealed,
        d.status.as_str(),
        d.attempts,
        d.attempt_base,
        d.next_attempt_at,
        owner,
        now,
        d.claimed_until,
        d.target.as_ref().map(|t| t.url.as_str()),
        target.origin,
    ])?;
    d.seq = conn.last_insert_rowid();
    Ok(())
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

#[async_trait]
impl MessageStore for SqliteStore {
    async fn ingest(&self, ingest: Ingest, owner: Option<&NodeId>) -> StoreResult<IngestResult> {
        let owner = owner.map(|o| o.to_string());
        let targets = target_columns(&self.key, &ingest.deliveries);
        self.writer
            .write(move |conn| {
                let Ingest { message: m, deliveries, .. } = &ingest;
                let mut deliveries = deliveries.clone();
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
                for (d, target) in deliveries.iter_mut().zip(&targets) {
                    insert_delivery(conn, d, target, owner.as_deref(), m.created_at)?;
                }
                Ok(IngestResult::Created(deliveries))
            })
            .await
    }

    async fn get_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Option<StoredMessage>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ?1 AND id = ?2"
                ))?
                .query_row([tenant, id], rows::message)
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
            let by_status = crate::message_list_by_status(&filter);
            let (t, id, m) = crate::message_list_names(by_status);
            let status_clause = if by_status {
                "d.status = ?"
            } else {
                crate::MESSAGE_HAS_STATUS
            };
            let mut c = Conditions::default();
            c.add(&format!("{t} = ?"), tenant)
                .add_opt(status_clause, filter.status.map(|s| s.as_str().to_string()))
                .add_opt(&format!("{m}event_type = ?"), filter.event_type)
                .add_opt(
                    &format!("{id} >= ?"),
                    filter.since.map(|at| cutoff_id("msg_", at)),
                )
                .add_opt(&format!("{m}created_at >= ?"), filter.since)
                .add_opt(&format!("{m}created_at < ?"), filter.until)
                .add_opt(&format!("{id} < ?"), page.cursor.clone());
            let sql = crate::message_list_sql(
                MESSAGE_COLUMNS,
                &c.sql(),
                crate::page_limit(&page),
                by_status,
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(crate::paginate(found, &page, |m| m.id.to_string()))
        })
        .await
    }

    async fn message_tenant(&self, id: &MessageId) -> StoreResult<Option<TenantId>> {
        let id = id.to_string();
        self.read(move |conn| {
            let tenant: Option<String> = conn
                .prepare_cached(
                    "SELECT t.id FROM tenants t WHERE EXISTS \
                     (SELECT 1 FROM messages m WHERE m.tenant_id = t.id AND m.id = ?1)",
                )?
                .query_row([id], |r| r.get(0))
                .optional()?;
            Ok(tenant.map(TenantId::from_stored))
        })
        .await
    }

    async fn message_deliveries(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Vec<Delivery>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let key = self.key.clone();
        self.read(move |conn| {
            select_deliveries(
                conn,
                &key,
                &format!(
                    "d.tenant_id = ?1 AND d.status IN {ANY_STATUS} AND d.message_id = ?2 ORDER BY d.seq"
                ),
                [tenant, id],
            )
        })
        .await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        let id = id.to_string();
        let key = self.key.clone();
        self.read(move |conn| Ok(select_deliveries(conn, &key, "d.id = ?1", [id])?.pop()))
            .await
    }

    async fn add_deliveries(
        &self,
        deliveries: Vec<Delivery>,
        owner: Option<&NodeId>,
    ) -> StoreResult<Vec<Delivery>> {
        let owner = owner.map(|o| o.to_string());
        let targets = target_columns(&self.key, &deliveries);
        self.writer
            .write(move |conn| {
                let mut deliveries = deliveries.clone();
                for (d, target) in deliveries.iter_mut().zip(&targets) {
                    let now = d.created_at;
                    insert_delivery(conn, d, target, owner.as_deref(), now)?;
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
                let sql = format!(
                    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, updated_at = ?2 \
                     WHERE id = ?1 AND status IN {OPEN} RETURNING id"
                );
                let mut cancelled = Vec::new();
                for id in &ids {
                    cancelled.extend(delivery_ids(conn, &sql, params![id, now])?);
                }
                Ok(cancelled)
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
            // A message's or a delivery's attempts are found by delivery; left to
            // itself the planner walks all the tenant's attempts newest first.
            let by_delivery = filter.message_id.is_some() || filter.delivery_id.is_some();
            let index = if by_delivery {
                "INDEXED BY attempts_delivery"
            } else {
                ""
            };
            let mut c = Conditions::default();
            // The tenant is the first parameter, `?1`, also in the message's clause.
            let of_message = format!(
                "delivery_id IN (SELECT id FROM deliveries \
                 WHERE tenant_id = ?1 AND status IN {ANY_STATUS} AND message_id = ?)"
            );
            c.add("tenant_id = ?", tenant)
                .add_opt(&of_message, filter.message_id.map(|i| i.to_string()))
                .add_opt("endpoint_id = ?", filter.endpoint_id.map(|i| i.to_string()))
                .add_opt("delivery_id = ?", filter.delivery_id.map(|i| i.to_string()))
                .add_opt("outcome = ?", filter.outcome)
                .add_opt("created_at >= ?", filter.since)
                .add_opt("created_at < ?", filter.until)
                .add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT {ATTEMPT_READ} FROM attempts {index} WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                crate::page_limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::attempt)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(crate::paginate(found, &page, |a| a.id.to_string()))
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
        let key = self.key.clone();
        self.read(move |conn| {
            let mut c = dead_conditions(tenant, &filter);
            c.add_opt("d.id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS}, m.event_type, \
                 COALESCE(d.target_url, e.url, ''), \
                 (d.endpoint_id IS NULL OR e.deleted = 0) \
                 FROM deliveries d {JOIN_MESSAGE} \
                 LEFT JOIN endpoints e ON e.id = d.endpoint_id \
                 WHERE {} ORDER BY d.id DESC LIMIT {}",
                c.sql(),
                crate::page_limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), |r| rows::dead_letter(r, &key))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(crate::paginate(found, &page, |d| d.delivery.id.to_string()))
        })
        .await
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
        owner: Option<&NodeId>,
        now: Millis,
    ) -> StoreResult<Vec<Delivery>> {
        let tenant = tenant.to_string();
        let owner = owner.map(|o| o.to_string());
        let key = self.key.clone();
        self.writer
            .write(move |conn| {
                let mut c = match &selector {
                    ReplaySelector::One(id) => {
                        let found = select_deliveries(conn, &key, "d.id = ?1 AND d.tenant_id = ?2", params![id.as_str(), tenant])?;
                        let Some(d) = found.first() else {
                            return Err(StoreError::NotFound);
                        };
                        if d.status != DeliveryStatus::Dead {
                            return Err(StoreError::Conflict(format!("delivery {id} is {}, not dead", d.status.as_str())));
                        }
                        let mut c = Conditions::default();
                        c.add("d.id = ?", id.to_string()).add("d.tenant_id = ?", tenant.clone()).fixed("d.status = 'dead'");
                        c
                    }
                    ReplaySelector::Bulk(filter) => dead_conditions(tenant.clone(), filter),
                };
                c.fixed("(d.endpoint_id IS NULL OR d.endpoint_id IN (SELECT id FROM endpoints WHERE deleted = 0))");
                let mut params = vec![rusqlite::types::Value::from(owner.clone())];
                params.extend(c.params.iter().cloned());
                let sql = format!(
                    "UPDATE deliveries AS d SET status = 'pending', attempt_base = attempts, next_attempt_at = {now}, \
                     dead_reason = NULL, dead_at = NULL, lease_owner = ?, lease_until = NULL, updated_at = {now} \
                     WHERE {} RETURNING seq",
                    c.sql()
                );
                let seqs = conn
                    .prepare(&sql)?
                    .query_map(params_from_iter(params), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                if seqs.is_empty() && matches!(selector, ReplaySelector::One(_)) {
                    return Err(StoreError::Conflict("the endpoint of this dead letter was deleted".into()));
                }
                let mut replayed = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    replayed.extend(select_deliveries(conn, &key, "d.seq = ?1", [seq])?);
                }
                Ok(replayed)
            })
            .await
    }
}
