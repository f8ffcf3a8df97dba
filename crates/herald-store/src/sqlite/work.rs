//! Who sends what, on SQLite: nodes, orphan adoption, claims and outcomes. One
//! process owns the file, so registering a node forgets all others and takes back
//! at once whatever a previous run left `delivering`.

use async_trait::async_trait;
use herald_core::{DeliveryId, EndpointId};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{self, to_json, ATTEMPT_COLUMNS, DELIVERY_COLUMNS};
use super::{delivery_ids, load_endpoint, save_endpoint, select_deliveries, SqliteStore, OPEN};
use crate::crypto::MasterKey;
use crate::JOINED_MESSAGE_COLUMNS;
use crate::*;

#[async_trait]
impl WorkStore for SqliteStore {
    async fn register_node(&self, node: &NodeId, now: Millis) -> StoreResult<()> {
        let node = node.to_string();
        self.writer
            .write(move |conn| {
                conn.execute("DELETE FROM nodes", [])?;
                conn.execute("INSERT INTO nodes (id, heartbeat_at) VALUES (?1, ?2)", params![node, now])?;
                conn.execute(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'delivering'",
                    [],
                )?;
                Ok(())
            })
            .await
    }

    async fn heartbeat(&self, node: &NodeId, now: Millis) -> StoreResult<()> {
        let node = node.to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO nodes (id, heartbeat_at) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                )?
                .execute(params![node, now])?;
                Ok(())
            })
            .await
    }

    async fn adopt_orphans(
        &self,
        node: &NodeId,
        now: Millis,
        stale_before: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let node = node.to_string();
        let key = self.key.clone();
        self.writer
            .write(move |conn| {
                // Three index ranges (no owner, owners before this node's id, owners
                // after it): this node's own deliveries, however many, are not read.
                const DEAD: &str = "NOT IN (SELECT id FROM nodes WHERE heartbeat_at >= ?3)";
                let orphans = |owner: &str| {
                    format!(
                        "SELECT seq FROM (SELECT seq FROM deliveries \
                         WHERE status IN {OPEN} AND {owner} \
                         AND (status = 'pending' OR lease_until IS NULL OR lease_until < ?2) \
                         ORDER BY lease_owner, seq LIMIT ?4)"
                    )
                };
                let seqs = conn
                    .prepare_cached(&format!(
                        "UPDATE deliveries SET lease_owner = ?1, lease_until = NULL, status = 'pending', updated_at = ?2 \
                         WHERE seq IN (SELECT seq FROM ({} UNION ALL {} UNION ALL {}) ORDER BY seq LIMIT ?4) \
                         RETURNING seq",
                        orphans("lease_owner IS NULL"),
                        orphans(&format!("lease_owner < ?1 AND lease_owner {DEAD}")),
                        orphans(&format!("lease_owner > ?1 AND lease_owner {DEAD}")),
                    ))?
                    .query_map(params![node, now, stale_before, limit], |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut adopted = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    adopted.extend(select_deliveries(conn, &key, "d.seq = ?1", [seq])?);
                }
                adopted.sort_by_key(|d| d.seq);
                Ok(adopted)
            })
            .await
    }

    async fn owned_deliveries(
        &self,
        node: &NodeId,
        lane: LaneRef<'_>,
        ordered: bool,
        limit: u32,
    ) -> StoreResult<Vec<(Delivery, StoredMessage)>> {
        let (lane_sql, index, value) = match lane {
            LaneRef::Endpoint(id) => (
                "d.endpoint_id = ?1",
                if ordered {
                    "deliveries_endpoint_open"
                } else {
                    "deliveries_due"
                },
                id.to_string(),
            ),
            LaneRef::Origin(origin) => (
                "d.endpoint_id IS NULL AND d.target_origin = ?1",
                "deliveries_origin_due",
                origin.to_string(),
            ),
        };
        let order = if ordered {
            "d.seq"
        } else {
            "d.next_attempt_at, d.seq"
        };
        let (node, key) = (node.to_string(), self.key.clone());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS}, {JOINED_MESSAGE_COLUMNS} FROM deliveries d INDEXED BY {index} \
                 {JOIN_MESSAGE} \
                 WHERE {lane_sql} AND d.status IN {OPEN} AND d.lease_owner = ?2 \
                 ORDER BY {order} LIMIT ?3"
            ))?;
            let first = DELIVERY_COLUMNS.split(',').count();
            let rows = stmt
                .query_map(params![value, node, limit], |r| {
                    Ok((rows::delivery(r, &key)?, rows::message_at(r, first)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn claim(
        &self,
        id: &DeliveryId,
        node: &NodeId,
        lease_until: Millis,
        ordered: Option<&EndpointId>,
    ) -> StoreResult<Claim> {
        let (id, node, ordered) = (
            id.to_string(),
            node.to_string(),
            ordered.map(|e| e.to_string()),
        );
        self.writer
            .write(move |conn| {
                if let Some(endpoint) = &ordered {
                    let blocked = conn
                        .prepare_cached(&format!(
                            "SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND status IN {OPEN} \
                             AND seq < (SELECT seq FROM deliveries WHERE id = ?2) LIMIT 1"
                        ))?
                        .exists(params![endpoint, id])?;
                    if blocked {
                        return Ok(Claim::Blocked);
                    }
                }
                let tries = conn
                    .prepare_cached(&format!(
                        "UPDATE deliveries SET status = 'delivering', lease_until = ?3 \
                         WHERE id = ?1 AND lease_owner = ?2 AND status IN {OPEN} \
                         RETURNING attempts, attempt_base"
                    ))?
                    .query_row(params![id, node, lease_until], |r| {
                        Ok(Tries {
                            attempts: r.get(0)?,
                            attempt_base: r.get(1)?,
                        })
                    })
                    .optional()?;
                Ok(tries.map_or(Claim::Lost, Claim::Claimed))
            })
            .await
    }

    async fn record_outcome(&self, outcome: Outcome, node: &NodeId) -> StoreResult<OutcomeApplied> {
        let node = node.to_string();
        let key = self.key.clone();
        self.writer
            .write(move |conn| apply_outcome(conn, &key, &outcome, &node))
            .await
    }
}

fn insert_attempt(conn: &Connection, a: &Attempt) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
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
        a.created_at,
        a.request_body.as_ref().filter(|_| !a.request_body_is_payload),
        a.request_body_is_payload
    ])?;
    Ok(())
}

fn apply_outcome(
    conn: &Connection,
    key: &MasterKey,
    outcome: &Outcome,
    node: &str,
) -> StoreResult<OutcomeApplied> {
    /// Applies only while this node's claim holds.
    const SQL: &str = "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, \
         last_error = ?5, dead_reason = ?6, dead_at = ?7, lease_until = NULL, updated_at = ?8 \
         WHERE id = ?1 AND status = 'delivering' AND lease_owner = ?9";
    let Outcome {
        attempt: a,
        next,
        now,
    } = outcome;
    let now = *now;
    insert_attempt(conn, a)?;
    let id = a.delivery_id.as_str();
    let (status, at, error, dead_reason, dead_at) = match &next {
        NextState::Succeeded => ("succeeded", None, None, None, None),
        NextState::Retry { at, error } => ("pending", Some(*at), Some(error.as_str()), None, None),
        NextState::Dead { reason } | NextState::DisableEndpoint { reason, .. } => (
            "dead",
            None,
            Some(reason.as_str()),
            Some(reason.as_str()),
            Some(now),
        ),
    };
    let changed = conn.prepare_cached(SQL)?.execute(params![
        id,
        status,
        a.attempt,
        at,
        error,
        dead_reason,
        dead_at,
        now,
        node
    ])?;
    if changed == 0 {
        return Ok(OutcomeApplied::Stale);
    }
    let also_dead = match &next {
        NextState::DisableEndpoint {
            endpoint_id,
            reason,
        } => disable(conn, key, endpoint_id.as_str(), reason, now)?,
        _ => Vec::new(),
    };
    Ok(OutcomeApplied::Applied { also_dead })
}

/// Disables the endpoint with a reason and dead-letters its open deliveries.
fn disable(
    conn: &Connection,
    key: &MasterKey,
    endpoint_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<DeliveryId>> {
    let mut endpoint = load_endpoint(conn, key, endpoint_id)?.ok_or(StoreError::NotFound)?;
    endpoint.active = false;
    endpoint.disabled_reason = Some(reason.to_string());
    endpoint.updated_at = from_millis(now);
    save_endpoint(conn, key, &endpoint)?;
    delivery_ids(
        conn,
        &format!(
            "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, dead_reason = ?2, \
             last_error = COALESCE(last_error, ?2), dead_at = ?3, updated_at = ?3 \
             WHERE endpoint_id = ?1 AND status IN {OPEN} RETURNING id"
        ),
        params![endpoint_id, reason, now],
    )
}
