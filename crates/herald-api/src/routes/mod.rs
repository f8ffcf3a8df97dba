//! The native API's routes, one module per resource, and the helpers they share.

pub mod callbacks;
pub mod dead_letters;
pub mod endpoints;
pub mod health;
pub mod messages;
pub mod monitoring;
pub mod seed003;
pub mod tenants;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId, ValidationError};
use herald_store::{PageRequest, Tenant};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub type State = axum::extract::State<Arc<AppState>>;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .merge(tenants::router())
        .merge(endpoints::router())
        .merge(messages::router())
        .merge(dead_letters::router())
        .merge(callbacks::router())
        .merge(monitoring::router())
        .merge(seed003::router())
        .merge(tokens::router())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(crate::openapi::document),
        )
}

/// Ids in paths: a malformed one names nothing, so it is a 404.
pub fn tenant_id(raw: &str) -> ApiResult<TenantId> {
    TenantId::parse(raw, "tenant_id").map_err(|_| ApiError::NotFound("tenant"))
}

pub fn endpoint_id(raw: &str) -> ApiResult<EndpointId> {
    EndpointId::parse(raw, "endpoint_id").map_err(|_| ApiError::NotFound("endpoint"))
}

pub fn message_id(raw: &str) -> ApiResult<MessageId> {
    MessageId::parse(raw, "message_id").map_err(|_| ApiError::NotFound("message"))
}

pub fn delivery_id(raw: &str) -> ApiResult<DeliveryId> {
    DeliveryId::parse(raw, "delivery_id").map_err(|_| ApiError::NotFound("delivery"))
}

/// The tenant a path names, or 404.
pub async fn tenant(state: &AppState, raw: &str) -> ApiResult<Tenant> {
    let id = tenant_id(raw)?;
    state
        .engine
        .store()
        .get_tenant(&id)
        .await?
        .ok_or(ApiError::NotFound("tenant"))
}

/// The query of a list route with no filters.
#[derive(serde::Deserialize, Default)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// `limit` (1 to 500, default 50) and `cursor` of a list route.
pub fn page(limit: Option<&str>, cursor: Option<String>) -> ApiResult<PageRequest> {
    let limit = match limit {
        None => 50,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(ValidationError::new("limit", "must be a number from 1 to 500").into())
            }
        },
    };
    Ok(PageRequest { limit, cursor })
}
