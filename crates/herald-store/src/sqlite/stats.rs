//! Monitoring reads and retention on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use herald_core::TenantId;
use rusqlite::{params, params_from_iter, Connection};

use super::rows::{self, DELIVERY_COLUMNS};
use super::{SqliteStore, ANY_STATUS, OPEN};
use crate::crypto::MasterKey;
use crate::*;

fn durations(
    conn: &Connection,
    tenant: Option<&str>,
    since_id: &str,
) -> rusqlite::Result<Vec<(String, u64)>> {
    // Attempts are kept by tenant, so all of them are read tenant by tenant.
    let (sql, params): (&str, Vec<&str>) = match tenant {
        Some(t) => (
            "SELECT outcome, duration_ms FROM attempts WHERE tenant_id = ?2 AND id >= ?1",
            vec![since_id, t],
        ),
        None => (
            "SELECT a.outcome, a.duration_ms FROM tenants t CROSS JOIN attempts a \
             ON a.tenant_id = t.id AND a.id >= ?1",
            vec![since_id],
        ),
    };
    conn.prepare_cached(sql)?
        .query_map(params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect()
}

fn dead_letters(
    conn: &Connection,
    key: &MasterKey,
    tenant: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<DeadLetter>> {
    let mut params: Vec<rusqlite::types::Value> = vec![(limit as i64).into()];
    let mut filter = String::new();
    if let Some(t) = tenant {
        filter = "AND d.tenant_id = ?2".into();
        params.push(t.to_string().into());
    }
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, m.event_type, COALESCE(d.target_url, e.url, ''), \
         (d.endpoint_id IS NULL OR e.deleted = 0) \
         FROM deliveries d {JOIN_MESSAGE} \
         LEFT JOIN endpoints e ON e.id = d.endpoint_id \
         WHERE d.status = 'dead' {filter} ORDER BY d.dead_at DESC LIMIT ?1"
    );
    let found = conn
        .prepare(&sql)?
        .query_map(params_from_iter(params), |r| rows::dead_letter(r, key))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(found)
}

#[async_trait]
impl StatsStore for SqliteStore {
    async fn tenant_stats(&self, tenant: &TenantId) -> StoreResult<TenantStats> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let row = conn.query_row(
                &format!(
                    "SELECT (SELECT COUNT(*) FROM messages WHERE tenant_id = ?1), \
                     (SELECT COUNT(*) FROM deliveries WHERE tenant_id = ?1 AND status = 'succeeded'), \
                     (SELECT COUNT(*) FROM attempts WHERE tenant_id = ?1 AND outcome != 'success'), \
                     (SELECT COUNT(*) FROM deliveries WHERE tenant_id = ?1 AND status IN {OPEN} AND attempts > 0), \
                     (SELECT COUNT(*) FROM deliveries WHERE tenant_id = ?1 AND status = 'dead'), \
                     (SELECT AVG(duration_ms) FROM attempts WHERE tenant_id = ?1), \
                     MAX(COALESCE((SELECT MAX(created_at) FROM messages WHERE tenant_id = ?1), 0), \
                         COALESCE((SELECT MAX(created_at) FROM attempts WHERE tenant_id = ?1), 0))"
                ),
                [&tenant],
                |r| {
                    Ok(TenantStats {
                        total_events: r.get::<_, i64>(0)? as u64,
                        successful_events: r.get::<_, i64>(1)? as u64,
                        failed_events: r.get::<_, i64>(2)? as u64,
                        pending_retries: r.get::<_, i64>(3)? as u64,
                        dead_letter_count: r.get::<_, i64>(4)? as u64,
                        avg_response_time_ms: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
                        last_updated: Some(r.get::<_, i64>(6)?).filter(|t| *t > 0),
                    })
                },
            )?;
            Ok(row)
        })
        .await
    }

    async fn attempt_stats(
        &self,
        tenant: Option<&TenantId>,
        since: Millis,
    ) -> StoreResult<AttemptStats> {
        let tenant = tenant.map(|t| t.to_string());
        self.read(move |conn| {
            Ok(summarise(durations(
                conn,
                tenant.as_deref(),
                &cutoff_id("att_", since),
            )?))
        })
        .await
    }

    async fn endpoint_stats(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<EndpointStats>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut tries: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
            let mut stmt = conn.prepare_cached(
                "SELECT endpoint_id, outcome, duration_ms FROM attempts \
                 WHERE tenant_id = ?1 AND id >= ?2 AND endpoint_id IS NOT NULL",
            )?;
            let mut rows = stmt.query(params![tenant, cutoff_id("att_", since)])?;
            while let Some(r) = rows.next()? {
                tries
                    .entry(r.get(0)?)
                    .or_default()
                    .push((r.get(1)?, r.get::<_, i64>(2)? as u64));
            }
            // Counted per endpoint on the partial indexes of open and of dead
            // deliveries: index ranges, however many deliveries the tenant has.
            let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            let ids = conn
                .prepare_cached("SELECT id FROM endpoints WHERE tenant_id = ?1 AND deleted = 0")?
                .query_map(params![tenant], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut count = conn.prepare_cached(&format!(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ?1 AND status IN {OPEN}), \
                 (SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ?1 AND status = 'dead')"
            ))?;
            for id in ids {
                let (open, dead) = count.query_row(params![id], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })?;
                counts.insert(id, (open, dead));
            }
            Ok(endpoint_stats(tries, counts))
        })
        .await
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<ThroughputPoint>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT created_at / 1000 * 1000, SUM(outcome = 'success'), SUM(outcome != 'success') \
                 FROM attempts WHERE tenant_id = ?1 AND id >= ?2 GROUP BY 1 ORDER BY 1",
            )?;
            let points = stmt
                .query_map(params![tenant, cutoff_id("att_", since)], |r| {
                    Ok(ThroughputPoint {
                        at: r.get(0)?,
                        success: r.get::<_, i64>(1)? as u64,
                        failure: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(points)
        })
        .await
    }

    async fn open_stats(&self, now: Millis) -> StoreResult<OpenStats> {
        /// Not being sent: pending, or claimed by a lease that has run out (a
        /// delivery committed claimed and left in the store behind a backlog).
        const WAITING: &str = "(status = 'pending' OR lease_until IS NULL OR lease_until < ?1)";
        self.read(move |conn| {
            Ok(conn.query_row(
                &format!(
                    "SELECT COALESCE(SUM({WAITING}), 0), COALESCE(SUM(NOT ({WAITING})), 0), \
                     MIN(CASE WHEN {WAITING} AND next_attempt_at <= ?1 THEN next_attempt_at END) \
                     FROM deliveries WHERE status IN {OPEN}"
                ),
                [now],
                |r| {
                    Ok(OpenStats {
                        pending: r.get::<_, i64>(0)? as u64,
                        delivering: r.get::<_, i64>(1)? as u64,
                        oldest_due: r.get(2)?,
                    })
                },
            )?)
        })
        .await
    }

    async fn recent_failures(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let (tenant, key) = (tenant.map(|t| t.to_string()), self.key.clone());
        self.read(move |conn| dead_letters(conn, &key, tenant.as_deref(), limit))
            .await
    }

    async fn purge(
        &self,
        messages_before: Millis,
        attempts_before: Millis,
        limit: u32,
    ) -> StoreResult<Purged> {
        self.writer
            .write(move |conn| {
                // Attempts and messages are kept by tenant, so the old ones are
                // looked for tenant by tenant (deleting a tenant deletes its rows);
                // CROSS JOIN keeps the tenants the outer loop.
                let attempts = conn.execute(
                    "DELETE FROM attempts WHERE (tenant_id, id) IN (SELECT a.tenant_id, a.id \
                     FROM tenants t CROSS JOIN attempts a ON a.tenant_id = t.id AND a.id < ?1 LIMIT ?2)",
                    params![cutoff_id("att_", attempts_before), limit],
                )? as u64;
                let old: Vec<(String, String)> = conn
                    .prepare(&format!(
                        "SELECT m.tenant_id, m.id FROM tenants t CROSS JOIN messages m \
                         ON m.tenant_id = t.id AND m.id < ?1 WHERE NOT EXISTS \
                         (SELECT 1 FROM deliveries d WHERE d.tenant_id = m.tenant_id \
                          AND d.status IN {OPEN} AND d.message_id = m.id) LIMIT ?2"
                    ))?
                    .query_map(params![cutoff_id("msg_", messages_before), limit], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut gone = 0;
                for (tenant, id) in &old {
                    // Attempts by delivery: there is no index of attempts by message.
                    conn.prepare_cached(&format!(
                        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries \
                         WHERE tenant_id = ?1 AND status IN {ANY_STATUS} AND message_id = ?2)"
                    ))?
                    .execute([tenant, id])?;
                    conn.prepare_cached(&format!(
                        "DELETE FROM deliveries WHERE tenant_id = ?1 AND status IN {ANY_STATUS} \
                         AND message_id = ?2"
                    ))?
                    .execute([tenant, id])?;
                    gone += conn
                        .prepare_cached("DELETE FROM messages WHERE tenant_id = ?1 AND id = ?2")?
                        .execute([tenant, id])? as u64;
                }
                Ok(Purged { messages: gone, attempts })
            })
            .await
    }
}
