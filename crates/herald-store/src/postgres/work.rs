//! Who sends what, on PostgreSQL: node heartbeats, adoption of orphans with
//! `FOR UPDATE SKIP LOCKED` (several processes adopt without waiting on each other
//! or taking the same rows), claims and outcomes through the group-commit writer.

use async_trait::async_trait;
use herald_core::{DeliveryId, EndpointId};

use super::rows::{self, DELIVERY_COLUMNS};
use super::{ids, load_endpoint, pg, save_endpoint, PgStore, OPEN};
use crate::crypto::MasterKey;
use crate::JOINED_MESSAGE_COLUMNS;
use crate::*;

/// Nodes silent this long, with nothing open, are forgotten.
const FORGET_NODES_MS: i64 = 86_400_000;

#[async_trait]
impl WorkStore for PgStore {
    async fn register_node(&self, node: &NodeId, now: Millis) -> StoreResult<()> {
        self.heartbeat(node, now).await
    }

    async fn heartbeat(&self, node: &NodeId, now: Millis) -> StoreResult<()> {
        sqlx::query("INSERT INTO nodes (id, heartbeat_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at")
            .bind(node.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        sqlx::query(&format!(
            "DELETE FROM nodes n WHERE heartbeat_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.lease_owner = n.id AND d.status IN {OPEN})"
        ))
        .bind(now - FORGET_NODES_MS)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn adopt_orphans(
        &self,
        node: &NodeId,
        now: Millis,
        stale_before: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "WITH dead AS (SELECT id FROM nodes WHERE heartbeat_at < $3 AND id <> $1), \
             picked AS (SELECT seq FROM deliveries \
                 WHERE status IN {OPEN} \
                 AND (lease_owner IS NULL OR lease_owner IN (SELECT id FROM dead)) \
                 AND (status = 'pending' OR lease_until IS NULL OR lease_until < $2) \
                 ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET lease_owner = $1, lease_until = NULL, status = 'pending', updated_at = $2 \
             FROM picked WHERE d.seq = picked.seq RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(node.as_str())
        .bind(now)
        .bind(stale_before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut adopted = rows
            .iter()
            .map(|r| rows::delivery(r, &self.key))
            .collect::<StoreResult<Vec<_>>>()?;
        adopted.sort_by_key(|d| d.seq);
        Ok(adopted)
    }

    async fn owned_deliveries(
        &self,
        node: &NodeId,
        lane: LaneRef<'_>,
        ordered: bool,
        limit: u32,
    ) -> StoreResult<Vec<(Delivery, StoredMessage)>> {
        let (lane_sql, value) = match lane {
            LaneRef::Endpoint(id) => ("d.endpoint_id = $1", id.as_str()),
            LaneRef::Origin(origin) => ("d.endpoint_id IS NULL AND d.target_origin = $1", origin),
        };
        let order = if ordered {
            "d.seq"
        } else {
            "d.next_attempt_at, d.seq"
        };
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, {JOINED_MESSAGE_COLUMNS} FROM deliveries d \
             {JOIN_MESSAGE} \
             WHERE {lane_sql} AND d.status IN {OPEN} AND d.lease_owner = $2 \
             ORDER BY {order} LIMIT $3"
        ))
        .bind(value)
        .bind(node.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let first = DELIVERY_COLUMNS.split(',').count();
        rows.iter()
            .map(|r| Ok((rows::delivery(r, &self.key)?, rows::message_at(r, first)?)))
            .collect()
    }

    async fn claim(
        &self,
        id: &DeliveryId,
        node: &NodeId,
        lease_until: Millis,
        ordered: Option<&EndpointId>,
    ) -> StoreResult<Claim> {
        self.writer
            .claim(
                id.to_string(),
                node.to_string(),
                lease_until,
                ordered.map(|e| e.to_string()),
            )
            .await
    }

    async fn record_outcome(&self, outcome: Outcome, node: &NodeId) -> StoreResult<OutcomeApplied> {
        self.writer.outcome(outcome, node.to_string()).await
    }

    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.signal.clone())
    }
}

/// Disables the endpoint with a reason and dead-letters its open deliveries.
pub(crate) async fn disable(
    conn: &mut sqlx::PgConnection,
    key: &MasterKey,
    endpoint_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<DeliveryId>> {
    let Some(mut endpoint) = load_endpoint(&mut *conn, key, endpoint_id, true).await? else {
        return Ok(Vec::new());
    };
    endpoint.active = false;
    endpoint.disabled_reason = Some(reason.to_string());
    endpoint.updated_at = from_millis(now);
    save_endpoint(&mut *conn, key, &endpoint).await?;
    let rows = sqlx::query(&format!(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, dead_reason = $2, \
         last_error = COALESCE(last_error, $2), dead_at = $3, updated_at = $3 \
         WHERE endpoint_id = $1 AND status IN {OPEN} RETURNING id"
    ))
    .bind(endpoint_id)
    .bind(reason)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(pg)?;
    ids(rows)
}
