//! Tenants and endpoints on SQLite.

use async_trait::async_trait;
use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, TenantId};
use rusqlite::{params, params_from_iter, OptionalExtension};

use super::rows::{self, to_json, Conditions};
use super::{delivery_ids, load_endpoint, save_endpoint, SqliteStore, OPEN};
use crate::*;

const TENANT_COLUMNS: &str = "id, name, retry_policy, created_at, updated_at";

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        self.writer
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(&format!(
                        "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING"
                    ))?
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
                .prepare_cached(&format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"
                ))?
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
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                crate::page_limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), rows::tenant)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(crate::paginate(found, &page, |t| t.id.to_string()))
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
                let open = delivery_ids(
                    conn,
                    &format!("SELECT id FROM deliveries WHERE tenant_id = ?1 AND status IN {OPEN}"),
                    [&id],
                )?;
                for table in ["attempts", "deliveries", "messages", "endpoints", "tokens"] {
                    conn.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [&id])?;
                }
                Ok(open)
            })
            .await
    }
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn create_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        let key = self.key.clone();
        self.writer
            .write(move |conn| {
                let tenant_exists = conn
                    .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
                    .exists([endpoint.tenant_id.as_str()])?;
                if !tenant_exists {
                    return Err(StoreError::NotFound);
                }
                conn.prepare_cached(
                    "INSERT INTO endpoints (id, tenant_id, config, url, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    endpoint.id.as_str(),
                    endpoint.tenant_id.as_str(),
                    key.seal_json(&endpoint),
                    endpoint.url,
                    to_millis(endpoint.created_at)
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_endpoint(&self, id: &EndpointId) -> StoreResult<Option<Endpoint>> {
        let (id, key) = (id.to_string(), self.key.clone());
        self.read(move |conn| load_endpoint(conn, &key, &id)).await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        let (tenant, key) = (tenant.to_string(), self.key.clone());
        self.read(move |conn| {
            let mut c = Conditions::default();
            c.add("tenant_id = ?", tenant)
                .fixed("deleted = 0")
                .add_opt("id < ?", page.cursor.clone());
            let sql = format!(
                "SELECT config FROM endpoints WHERE {} ORDER BY id DESC LIMIT {}",
                c.sql(),
                crate::page_limit(&page)
            );
            let found = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), |r| r.get::<_, String>(0))?
                .map(|sealed| key.open_json::<Endpoint>(&sealed?))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(crate::paginate(found, &page, |e| e.id.to_string()))
        })
        .await
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Endpoint>> {
        let (tenant, key) = (tenant.to_string(), self.key.clone());
        self.read(move |conn| {
            let found = conn
                .prepare_cached(
                    "SELECT config FROM endpoints WHERE tenant_id = ?1 AND deleted = 0 ORDER BY id",
                )?
                .query_map([tenant], |r| r.get::<_, String>(0))?
                .map(|sealed| key.open_json::<Endpoint>(&sealed?))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(found)
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: Endpoint) -> StoreResult<()> {
        let key = self.key.clone();
        self.writer
            .write(move |conn| save_endpoint(conn, &key, &endpoint))
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
                delivery_ids(
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
}
