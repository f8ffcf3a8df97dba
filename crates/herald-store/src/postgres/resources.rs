//! Tenants and endpoints on PostgreSQL.

use async_trait::async_trait;
use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, TenantId};

use super::rows::{self, TENANT_COLUMNS};
use super::{ids, load_endpoint, pg, save_endpoint, PgStore, OPEN};
use crate::*;

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialize")
}

#[async_trait]
impl TenantStore for PgStore {
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        let done = sqlx::query(&format!(
            "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(tenant.retry_policy.as_ref().map(to_json))
        .bind(tenant.created_at)
        .bind(tenant.updated_at)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("tenant {} exists", tenant.id)));
        }
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        row.as_ref().map(rows::tenant).transpose()
    }

    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>> {
        let mut c = rows::Conditions::default();
        c.text("id < ?", page.cursor.clone());
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE {} ORDER BY id DESC LIMIT {}",
            c.sql(),
            crate::page_limit(&page)
        );
        let found = c.query(&sql).fetch_all(&self.pool).await.map_err(pg)?;
        let found = found
            .iter()
            .map(rows::tenant)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::paginate(found, &page, |t| t.id.to_string()))
    }

    async fn update_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE tenants SET name = $2, retry_policy = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(tenant.retry_policy.as_ref().map(to_json))
        .bind(tenant.updated_at)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<Vec<DeliveryId>> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let open = sqlx::query(&format!(
            "SELECT id FROM deliveries WHERE tenant_id = $1 AND status IN {OPEN}"
        ))
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        for table in ["attempts", "deliveries", "messages", "endpoints", "tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        ids(open)
    }
}

#[async_trait]
impl EndpointStore for PgStore {
    async fn create_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        let done = sqlx::query(
            "INSERT INTO endpoints (id, tenant_id, config, created_at, url) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(endpoint.id.as_str())
        .bind(endpoint.tenant_id.as_str())
        .bind(self.key.seal_json(&endpoint))
        .bind(to_millis(endpoint.created_at))
        .bind(&endpoint.url)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_endpoint(&self, id: &EndpointId) -> StoreResult<Option<Endpoint>> {
        load_endpoint(&self.pool, &self.key, id.as_str(), false).await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        let mut c = rows::Conditions::default();
        c.text("tenant_id = ?", Some(tenant.as_str()))
            .fixed("NOT deleted")
            .text("id < ?", page.cursor.clone());
        let sql = format!(
            "SELECT config FROM endpoints WHERE {} ORDER BY id DESC LIMIT {}",
            c.sql(),
            crate::page_limit(&page)
        );
        let found = c.query(&sql).fetch_all(&self.pool).await.map_err(pg)?;
        let found = found
            .iter()
            .map(|r| {
                self.key
                    .open_json::<Endpoint>(&sqlx::Row::try_get::<String, _>(r, 0).map_err(pg)?)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::paginate(found, &page, |e| e.id.to_string()))
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Endpoint>> {
        let configs: Vec<String> = sqlx::query_scalar(
            "SELECT config FROM endpoints WHERE tenant_id = $1 AND NOT deleted ORDER BY id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        configs.iter().map(|c| self.key.open_json(c)).collect()
    }

    async fn update_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        save_endpoint(&self.pool, &self.key, &endpoint).await
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> StoreResult<Vec<DeliveryId>> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let done = sqlx::query("UPDATE endpoints SET deleted = TRUE WHERE id = $1 AND NOT deleted")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let cancelled = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, last_error = 'endpoint deleted' \
             WHERE endpoint_id = $1 AND status IN {OPEN} RETURNING id"
        ))
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        ids(cancelled)
    }
}
