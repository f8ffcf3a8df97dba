//! Monitoring reads and retention on PostgreSQL.

use std::collections::BTreeMap;

use async_trait::async_trait;
use herald_core::TenantId;
use sqlx::Row;

use super::rows::{self, DELIVERY_COLUMNS};
use super::{pg, PgStore, OPEN};
use crate::*;

#[async_trait]
impl StatsStore for PgStore {
    async fn tenant_stats(&self, tenant: &TenantId) -> StoreResult<TenantStats> {
        let r = sqlx::query(&format!(
            "SELECT (SELECT COUNT(*) FROM messages WHERE tenant_id = $1), \
             (SELECT COUNT(*) FROM deliveries WHERE tenant_id = $1 AND status = 'succeeded'), \
             (SELECT COUNT(*) FROM attempts WHERE tenant_id = $1 AND outcome <> 'success'), \
             (SELECT COUNT(*) FROM deliveries WHERE tenant_id = $1 AND status IN {OPEN} AND attempts > 0), \
             (SELECT COUNT(*) FROM deliveries WHERE tenant_id = $1 AND status = 'dead'), \
             (SELECT AVG(duration_ms)::float8 FROM attempts WHERE tenant_id = $1), \
             GREATEST((SELECT MAX(created_at) FROM messages WHERE tenant_id = $1), \
                      (SELECT MAX(created_at) FROM attempts WHERE tenant_id = $1))"
        ))
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(pg)?;
        let count = |i: usize| r.try_get::<i64, _>(i).map(|n| n as u64).map_err(pg);
        Ok(TenantStats {
            total_events: count(0)?,
            successful_events: count(1)?,
            failed_events: count(2)?,
            pending_retries: count(3)?,
            dead_letter_count: count(4)?,
            avg_response_time_ms: r.try_get::<Option<f64>, _>(5).map_err(pg)?.unwrap_or(0.0),
            last_updated: r.try_get(6).map_err(pg)?,
        })
    }

    async fn attempt_stats(
        &self,
        tenant: Option<&TenantId>,
        since: Millis,
    ) -> StoreResult<AttemptStats> {
        let rows = sqlx::query("SELECT outcome, duration_ms FROM attempts WHERE id >= $1 AND ($2::text IS NULL OR tenant_id = $2)")
            .bind(cutoff_id("att_", since))
            .bind(tenant.map(|t| t.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        let tries = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0).map_err(pg)?,
                    r.try_get::<i64, _>(1).map_err(pg)? as u64,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(summarise(tries))
    }

    async fn endpoint_stats(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<EndpointStats>> {
        let rows = sqlx::query(
            "SELECT endpoint_id, outcome, duration_ms FROM attempts \
             WHERE tenant_id = $1 AND id >= $2 AND endpoint_id IS NOT NULL",
        )
        .bind(tenant.as_str())
        .bind(cutoff_id("att_", since))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut tries: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for r in &rows {
            tries.entry(r.try_get(0).map_err(pg)?).or_default().push((
                r.try_get(1).map_err(pg)?,
                r.try_get::<i64, _>(2).map_err(pg)? as u64,
            ));
        }
        // Counted per endpoint on the partial indexes of open and of dead
        // deliveries: index ranges, however many deliveries the tenant has.
        let rows = sqlx::query(&format!(
            "SELECT e.id, \
             (SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.status IN {OPEN}), \
             (SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.status = 'dead') \
             FROM endpoints e WHERE e.tenant_id = $1 AND NOT e.deleted"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut counts = BTreeMap::new();
        for r in &rows {
            counts.insert(
                r.try_get::<String, _>(0).map_err(pg)?,
                (
                    r.try_get::<i64, _>(1).map_err(pg)? as u64,
                    r.try_get::<i64, _>(2).map_err(pg)? as u64,
                ),
            );
        }
        Ok(endpoint_stats(tries, counts))
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<ThroughputPoint>> {
        let rows = sqlx::query(
            "SELECT created_at / 1000 * 1000, COUNT(*) FILTER (WHERE outcome = 'success'), \
             COUNT(*) FILTER (WHERE outcome <> 'success') \
             FROM attempts WHERE tenant_id = $1 AND id >= $2 GROUP BY 1 ORDER BY 1",
        )
        .bind(tenant.as_str())
        .bind(cutoff_id("att_", since))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(ThroughputPoint {
                    at: r.try_get(0).map_err(pg)?,
                    success: r.try_get::<i64, _>(1).map_err(pg)? as u64,
                    failure: r.try_get::<i64, _>(2).map_err(pg)? as u64,
                })
            })
            .collect()
    }

    async fn open_stats(&self, now: Millis) -> StoreResult<OpenStats> {
        /// Not being sent: pending, or claimed by a lease that has run out (a
        /// delivery committed claimed and left in the store behind a backlog).
        const WAITING: &str = "(status = 'pending' OR lease_until IS NULL OR lease_until < $1)";
        let r = sqlx::query(&format!(
            "SELECT COUNT(*) FILTER (WHERE {WAITING}), COUNT(*) FILTER (WHERE NOT {WAITING}), \
             MIN(next_attempt_at) FILTER (WHERE {WAITING} AND next_attempt_at <= $1) \
             FROM deliveries WHERE status IN {OPEN}"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(pg)?;
        Ok(OpenStats {
            pending: r.try_get::<i64, _>(0).map_err(pg)? as u64,
            delivering: r.try_get::<i64, _>(1).map_err(pg)? as u64,
            oldest_due: r.try_get(2).map_err(pg)?,
        })
    }

    async fn recent_failures(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, m.event_type, COALESCE(d.target_url, e.url, ''), \
             (d.endpoint_id IS NULL OR NOT COALESCE(e.deleted, TRUE)) \
             FROM deliveries d {JOIN_MESSAGE} LEFT JOIN endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'dead' AND ($2::text IS NULL OR d.tenant_id = $2) ORDER BY d.dead_at DESC LIMIT $1"
        ))
        .bind(limit as i64)
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|r| rows::dead_letter(r, &self.key))
            .collect()
    }

    async fn purge(
        &self,
        messages_before: Millis,
        attempts_before: Millis,
        limit: u32,
    ) -> StoreResult<Purged> {
        let attempts = sqlx::query(
            "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE id < $1 LIMIT $2)",
        )
        .bind(cutoff_id("att_", attempts_before))
        .bind(limit as i64)
        .execute(&self.pool)
        .await
        .map_err(pg)?
        .rows_affected();
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let old: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT m.id FROM messages m WHERE m.id < $1 AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.status IN {OPEN}) LIMIT $2 FOR UPDATE SKIP LOCKED"
        ))
        .bind(cutoff_id("msg_", messages_before))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        // Attempts by delivery: there is no index of attempts by message.
        for sql in [
            "DELETE FROM attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE message_id = ANY($1))",
            "DELETE FROM deliveries WHERE message_id = ANY($1)",
        ] {
            sqlx::query(sql)
                .bind(&old)
                .execute(&mut *tx)
                .await
                .map_err(pg)?;
        }
        let messages = sqlx::query("DELETE FROM messages WHERE id = ANY($1)")
            .bind(&old)
            .execute(&mut *tx)
            .await
            .map_err(pg)?
            .rows_affected();
        tx.commit().await.map_err(pg)?;
        Ok(Purged { messages, attempts })
    }
}
