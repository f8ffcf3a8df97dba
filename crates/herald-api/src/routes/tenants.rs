//! `/api/v1/tenants`: create, list, read, change and delete tenants.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::retry::RetryPolicySpec;
use herald_core::TenantId;
use herald_store::Tenant;
use serde::{Deserialize, Deserializer};

use super::{page, tenant, tenant_id, PageQuery, State};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidJson, ValidQuery};
use crate::wire::{List, TenantOut};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants", get(list).post(create))
        .route(
            "/api/v1/tenants/{tid}",
            get(read).patch(update).delete(remove),
        )
}

fn some<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A tenant as a caller writes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Caller-chosen id (letters, digits, `-`, `_`; at most 64); generated when absent.
    pub id: Option<String>,
    pub name: Option<String>,
    /// The default retry policy of the tenant's endpoints; `null` clears it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<RetryPolicySpec>)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
}

fn name(name: Option<String>, fallback: &str) -> ApiResult<String> {
    let name = name.unwrap_or_else(|| fallback.to_string());
    if name.is_empty() || name.len() > 256 {
        return Err(
            herald_core::ValidationError::new("name", "must be 1 to 256 characters").into(),
        );
    }
    Ok(name)
}

fn policy(spec: Option<RetryPolicySpec>) -> ApiResult<Option<herald_core::retry::RetryPolicy>> {
    Ok(spec
        .map(|p| p.parse().map_err(|e| e.within("retry_policy")))
        .transpose()?)
}

#[utoipa::path(post, path = "/api/v1/tenants", request_body = TenantSpec,
    responses((status = 201, body = TenantOut), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create(
    state: State,
    ValidJson(spec): ValidJson<TenantSpec>,
) -> ApiResult<(StatusCode, Json<TenantOut>)> {
    let id = match spec.id {
        Some(raw) => TenantId::parse(&raw, "id")?,
        None => TenantId::new(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let tenant = Tenant {
        name: name(spec.name, id.as_str())?,
        retry_policy: policy(spec.retry_policy.flatten())?,
        id,
        created_at: now,
        updated_at: now,
    };
    state.engine.store().create_tenant(tenant.clone()).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

#[utoipa::path(get, path = "/api/v1/tenants", responses((status = 200, body = List<TenantOut>)))]
pub async fn list(
    state: State,
    ValidQuery(q): ValidQuery<PageQuery>,
) -> ApiResult<Json<List<TenantOut>>> {
    Ok(Json(tenant_list(&state, q).await?))
}

/// A page of tenants: the list route's query, shared with the dashboard.
pub async fn tenant_list(state: &AppState, q: PageQuery) -> ApiResult<List<TenantOut>> {
    let page = state
        .engine
        .store()
        .list_tenants(page(q.limit.as_deref(), q.cursor)?)
        .await?;
    Ok(List::from_page(page, TenantOut::from))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}", responses((status = 200, body = TenantOut)))]
pub async fn read(state: State, Path(tid): Path<String>) -> ApiResult<Json<TenantOut>> {
    Ok(Json(tenant(&state, &tid).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tid}", request_body = TenantSpec, responses((status = 200, body = TenantOut)))]
pub async fn update(
    state: State,
    Path(tid): Path<String>,
    ValidJson(spec): ValidJson<TenantSpec>,
) -> ApiResult<Json<TenantOut>> {
    let mut tenant = tenant(&state, &tid).await?;
    if spec
        .id
        .as_deref()
        .is_some_and(|id| id != tenant.id.as_str())
    {
        return Err(herald_core::ValidationError::new("id", "cannot be changed").into());
    }
    if spec.name.is_some() {
        tenant.name = name(spec.name, "")?;
    }
    if let Some(p) = spec.retry_policy {
        tenant.retry_policy = policy(p)?;
    }
    tenant.updated_at = chrono::Utc::now().timestamp_millis();
    state.engine.update_tenant(tenant.clone()).await?;
    Ok(Json(tenant.into()))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tid}", responses((status = 204)))]
pub async fn remove(state: State, Path(tid): Path<String>) -> ApiResult<StatusCode> {
    let id = tenant_id(&tid)?;
    state
        .engine
        .delete_tenant(&id)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::NotFound("tenant"),
            other => other,
        })?;
    Ok(StatusCode::NO_CONTENT)
}
