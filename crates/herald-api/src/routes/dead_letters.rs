//! `/api/v1/tenants/{tid}/dead-letters`: what finally failed, and replay of one or
//! many (by endpoint and time range).

use std::sync::Arc;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_core::EndpointId;
use herald_store::{DeadLetterFilter, ReplaySelector};
use serde::{Deserialize, Serialize};

use super::{delivery_id, page, tenant, State};
use crate::error::{ApiError, ApiResult};
use crate::extract::{time_param, ValidJson, ValidQuery};
use crate::wire::{DeadLetterOut, DeliveryOut, List};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants/{tid}/dead-letters", get(list))
        .route(
            "/api/v1/tenants/{tid}/dead-letters/replay",
            post(replay_bulk),
        )
        .route(
            "/api/v1/tenants/{tid}/dead-letters/{did}/replay",
            post(replay_one),
        )
}

#[derive(Deserialize, Default)]
pub struct DeadLetterQuery {
    pub endpoint_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A page of a tenant's dead letters: the list route's query, shared with the
/// dashboard.
pub async fn dead_letter_list(
    state: &AppState,
    tid: &str,
    q: DeadLetterQuery,
) -> ApiResult<List<DeadLetterOut>> {
    let tenant = tenant(state, tid).await?;
    let filter = DeadLetterFilter {
        endpoint_id: q
            .endpoint_id
            .filter(|e| !e.is_empty())
            .map(|e| EndpointId::parse(&e, "endpoint_id"))
            .transpose()?,
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
    };
    let page = state
        .engine
        .store()
        .list_dead_letters(&tenant.id, filter, page(q.limit.as_deref(), q.cursor)?)
        .await?;
    Ok(List::from_page(page, DeadLetterOut::from))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/dead-letters", responses((status = 200, body = List<DeadLetterOut>)))]
pub async fn list(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<DeadLetterQuery>,
) -> ApiResult<Json<List<DeadLetterOut>>> {
    Ok(Json(dead_letter_list(&state, &tid, q).await?))
}

/// Replays one dead letter: the same delivery, pending again with a fresh budget.
pub async fn replay_dead_letter(state: &AppState, tid: &str, did: &str) -> ApiResult<DeliveryOut> {
    let tenant = tenant(state, tid).await?;
    let replayed = state
        .engine
        .replay(&tenant.id, ReplaySelector::One(delivery_id(did)?))
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::NotFound("dead letter"),
            other => other,
        })?;
    let delivery = replayed.first().ok_or(ApiError::NotFound("dead letter"))?;
    Ok(DeliveryOut::from(delivery))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/dead-letters/{did}/replay", responses((status = 200, body = DeliveryOut), (status = 409, body = crate::error::ErrorBody)))]
pub async fn replay_one(
    state: State,
    Path((tid, did)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryOut>> {
    Ok(Json(replay_dead_letter(&state, &tid, &did).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplaySpec {
    pub endpoint_id: Option<String>,
    /// RFC 3339; dead at or after.
    pub since: Option<String>,
    /// RFC 3339; dead before.
    pub until: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplayedOut {
    pub replayed: usize,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/dead-letters/replay", request_body = BulkReplaySpec, responses((status = 200, body = ReplayedOut)))]
pub async fn replay_bulk(
    state: State,
    Path(tid): Path<String>,
    ValidJson(spec): ValidJson<BulkReplaySpec>,
) -> ApiResult<Json<ReplayedOut>> {
    let tenant = tenant(&state, &tid).await?;
    let filter = DeadLetterFilter {
        endpoint_id: spec
            .endpoint_id
            .map(|e| EndpointId::parse(&e, "endpoint_id"))
            .transpose()?,
        since: time_param(spec.since.as_deref(), "since")?,
        until: time_param(spec.until.as_deref(), "until")?,
    };
    let replayed = state
        .engine
        .replay(&tenant.id, ReplaySelector::Bulk(filter))
        .await?;
    Ok(Json(ReplayedOut {
        replayed: replayed.len(),
    }))
}
