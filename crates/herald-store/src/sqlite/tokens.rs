//! Tenant-scoped API tokens on SQLite.

use async_trait::async_trait;
use herald_core::TenantId;
use rusqlite::{params, OptionalExtension, Row};

use super::SqliteStore;
use crate::*;

fn token(r: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        tenant_id: TenantId::from_stored(r.get(1)?),
        name: r.get(2)?,
        hash: r.get(3)?,
        created_at: r.get(4)?,
    })
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, t: ApiToken) -> StoreResult<()> {
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO tokens (id, tenant_id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![t.id, t.tenant_id.as_str(), t.name, t.hash, t.created_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_tokens(&self, tenant: &TenantId) -> StoreResult<Vec<ApiToken>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare("SELECT id, tenant_id, name, hash, created_at FROM tokens WHERE tenant_id = ?1 ORDER BY id DESC")?
                .query_map([tenant], token)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_token(&self, tenant: &TenantId, id: &str) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |conn| {
                match conn.execute(
                    "DELETE FROM tokens WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, id],
                )? {
                    0 => Err(StoreError::NotFound),
                    _ => Ok(()),
                }
            })
            .await
    }

    async fn find_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let hash = hash.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, tenant_id, name, hash, created_at FROM tokens WHERE hash = ?1",
                )?
                .query_row([hash], token)
                .optional()?)
        })
        .await
    }
}
