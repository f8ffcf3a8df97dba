//! Tenant-scoped API tokens on PostgreSQL.

use async_trait::async_trait;
use herald_core::TenantId;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{pg, PgStore};
use crate::*;

fn token(r: &PgRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: r.try_get(0).map_err(pg)?,
        tenant_id: TenantId::from_stored(r.try_get(1).map_err(pg)?),
        name: r.try_get(2).map_err(pg)?,
        hash: r.try_get(3).map_err(pg)?,
        created_at: r.try_get(4).map_err(pg)?,
    })
}

#[async_trait]
impl TokenStore for PgStore {
    async fn create_token(&self, t: ApiToken) -> StoreResult<()> {
        sqlx::query("INSERT INTO tokens (id, tenant_id, name, hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&t.id)
            .bind(t.tenant_id.as_str())
            .bind(&t.name)
            .bind(&t.hash)
            .bind(t.created_at)
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn list_tokens(&self, tenant: &TenantId) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT id, tenant_id, name, hash, created_at FROM tokens WHERE tenant_id = $1 ORDER BY id DESC")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        rows.iter().map(token).collect()
    }

    async fn delete_token(&self, tenant: &TenantId, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM tokens WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn find_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let row =
            sqlx::query("SELECT id, tenant_id, name, hash, created_at FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg)?;
        row.as_ref().map(token).transpose()
    }
}
