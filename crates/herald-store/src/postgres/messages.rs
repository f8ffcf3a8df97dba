//! Messages, deliveries, attempts and dead letters on PostgreSQL. Ingest goes
//! through the group-commit writer; the rest runs on the pool.

use async_trait::async_trait;
use herald_core::delivery::DeliveryStatus;
use herald_core::{DeliveryId, MessageId, TenantId};

use super::rows::{self, Bind, Conditions, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, MESSAGE_COLUMNS};
use super::schema::INGEST_LOCK;
use super::writer::insert_deliveries;
use super::{ids, pg, select_deliveries, PgStore, OPEN};
use crate::*;

fn dead_conditions(tenant: &str, filter: &DeadLetterFilter) -> Conditions {
    let mut c = Conditions::default();
    c.text("d.tenant_id = ?", Some(tenant))
        .fixed("d.status = 'dead'")
        .text(
            "d.endpoint_id = ?",
            filter.endpoint_id.as_ref().map(|i| i.to_string()),
        )
        .int("d.dead_at >= ?", filter.since)
        .int("d.dead_at < ?", filter.until);
    c
}

#[async_trait]
impl MessageStore for PgStore {
    async fn ingest(&self, ingest: Ingest, owner: Option<&NodeId>) -> StoreResult<IngestResult> {
        self.writer
            .ingest(ingest, owner.map(|o| o.to_string()))
            .await
    }

    async fn get_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Option<StoredMessage>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        row.as_ref().map(rows::message).transpose()
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        filter: MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMessage>> {
        let by_status = crate::message_list_by_status(&filter);
        let (t, id, m) = crate::message_list_names(by_status);
        let status_clause = if by_status {
            "d.status = ?"
        } else {
            crate::MESSAGE_HAS_STATUS
        };
        let mut c = Conditions::default();
        c.text(&format!("{t} = ?"), Some(tenant.as_str()))
            .text(status_clause, filter.status.map(|s| s.as_str()))
            .text(&format!("{m}event_type = ?"), filter.event_type)
            .text(
                &format!("{id} >= ?"),
                filter.since.map(|at| cutoff_id("msg_", at)),
            )
            .int(&format!("{m}created_at >= ?"), filter.since)
            .int(&format!("{m}created_at < ?"), filter.until)
            .text(&format!("{id} < ?"), page.cursor.clone());
        let sql = crate::message_list_sql(
            MESSAGE_COLUMNS,
            &c.sql(),
            crate::page_limit(&page),
            by_status,
        );
        let found = c.query(&sql).fetch_all(&self.pool).await.map_err(pg)?;
        let found = found
            .iter()
            .map(rows::message)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::paginate(found, &page, |m| m.id.to_string()))
    }

    async fn message_tenant(&self, id: &MessageId) -> StoreResult<Option<TenantId>> {
        let row = sqlx::query("SELECT tenant_id FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?;
        row.map(|r| sqlx::Row::try_get::<String, _>(&r, 0).map(TenantId::from_stored))
            .transpose()
            .map_err(pg)
    }

    async fn message_deliveries(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d \
             WHERE d.message_id = $1 AND d.tenant_id = $2 ORDER BY d.seq"
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter().map(|r| rows::delivery(r, &self.key)).collect()
    }

    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        Ok(
            select_deliveries(&self.pool, &self.key, "d.id = $1", id.as_str())
                .await?
                .pop(),
        )
    }

    async fn add_deliveries(
        &self,
        mut deliveries: Vec<Delivery>,
        owner: Option<&NodeId>,
    ) -> StoreResult<Vec<Delivery>> {
        let owner = owner.map(|o| o.to_string());
        let mut tx = self.pool.begin().await.map_err(pg)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INGEST_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        let refs: Vec<&mut Delivery> = deliveries.iter_mut().collect();
        insert_deliveries(&mut tx, &self.key, refs, owner.as_deref()).await?;
        if owner.is_none() {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&self.channel)
                .execute(&mut *tx)
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(deliveries)
    }

    async fn cancel_deliveries(
        &self,
        ids_in: &[DeliveryId],
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>> {
        let wanted: Vec<String> = ids_in.iter().map(|i| i.to_string()).collect();
        let rows = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, updated_at = $2 \
             WHERE id = ANY($1) AND status IN {OPEN} RETURNING id"
        ))
        .bind(&wanted)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        ids(rows)
    }

    async fn list_attempts(
        &self,
        tenant: &TenantId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>> {
        let mut c = Conditions::default();
        c.text("tenant_id = ?", Some(tenant.as_str()))
            .text(
                "delivery_id IN (SELECT id FROM deliveries WHERE message_id = ?)",
                filter.message_id.map(|i| i.to_string()),
            )
            .text("endpoint_id = ?", filter.endpoint_id.map(|i| i.to_string()))
            .text("delivery_id = ?", filter.delivery_id.map(|i| i.to_string()))
            .text("outcome = ?", filter.outcome)
            .int("created_at >= ?", filter.since)
            .int("created_at < ?", filter.until)
            .text("id < ?", page.cursor.clone());
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {} ORDER BY id DESC LIMIT {}",
            c.sql(),
            crate::page_limit(&page)
        );
        let found = c.query(&sql).fetch_all(&self.pool).await.map_err(pg)?;
        let found = found
            .iter()
            .map(rows::attempt)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::paginate(found, &page, |a| a.id.to_string()))
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        filter: DeadLetterFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let mut c = dead_conditions(tenant.as_str(), &filter);
        c.text("d.id < ?", page.cursor.clone());
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, m.event_type, \
             COALESCE(d.target_url, e.url, ''), \
             (d.endpoint_id IS NULL OR NOT COALESCE(e.deleted, TRUE)) \
             FROM deliveries d {JOIN_MESSAGE} \
             LEFT JOIN endpoints e ON e.id = d.endpoint_id \
             WHERE {} ORDER BY d.id DESC LIMIT {}",
            c.sql(),
            crate::page_limit(&page)
        );
        let found = c.query(&sql).fetch_all(&self.pool).await.map_err(pg)?;
        let found = found
            .iter()
            .map(|r| rows::dead_letter(r, &self.key))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::paginate(found, &page, |d| d.delivery.id.to_string()))
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
        owner: Option<&NodeId>,
        now: Millis,
    ) -> StoreResult<Vec<Delivery>> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let mut c = match &selector {
            ReplaySelector::One(id) => {
                let found = sqlx::query(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = $1 AND d.tenant_id = $2"))
                    .bind(id.as_str())
                    .bind(tenant.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(pg)?;
                let Some(row) = found else {
                    return Err(StoreError::NotFound);
                };
                let d = rows::delivery(&row, &self.key)?;
                if d.status != DeliveryStatus::Dead {
                    return Err(StoreError::Conflict(format!(
                        "delivery {id} is {}, not dead",
                        d.status.as_str()
                    )));
                }
                let mut c = Conditions::default();
                c.text("d.id = ?", Some(id.as_str()))
                    .text("d.tenant_id = ?", Some(tenant.as_str()))
                    .fixed("d.status = 'dead'");
                c
            }
            ReplaySelector::Bulk(filter) => dead_conditions(tenant.as_str(), filter),
        };
        c.fixed("(d.endpoint_id IS NULL OR d.endpoint_id IN (SELECT id FROM endpoints WHERE NOT deleted))");
        let owner_sql = match owner {
            Some(o) => c.param(Bind::Text(o.to_string())),
            None => "NULL".into(),
        };
        let sql = format!(
            "UPDATE deliveries AS d SET status = 'pending', attempt_base = attempts, next_attempt_at = {now}, \
             dead_reason = NULL, dead_at = NULL, lease_owner = {owner_sql}, lease_until = NULL, updated_at = {now} \
             WHERE {} RETURNING {DELIVERY_COLUMNS}",
            c.sql()
        );
        let rows = c.query(&sql).fetch_all(&mut *tx).await.map_err(pg)?;
        if rows.is_empty() && matches!(selector, ReplaySelector::One(_)) {
            return Err(StoreError::Conflict(
                "the endpoint of this dead letter was deleted".into(),
            ));
        }
        if owner.is_none() && !rows.is_empty() {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&self.channel)
                .execute(&mut *tx)
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        let mut replayed = rows
            .iter()
            .map(|r| rows::delivery(r, &self.key))
            .collect::<StoreResult<Vec<_>>>()?;
        replayed.sort_by_key(|d| d.seq);
        Ok(replayed)
    }
}
