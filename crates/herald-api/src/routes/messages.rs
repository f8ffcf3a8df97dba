//! `/api/v1/tenants/{tid}/messages` and `/attempts`: ingest, status for polling,
//! attempt logs, resend and cancel.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_core::delivery::DeliveryStatus;
use herald_core::message::MessageSpec;
use herald_core::EndpointId;
use herald_store::{AttemptFilter, MessageFilter};
use serde::{Deserialize, Serialize};

use super::{delivery_id, message_id, page, tenant, State};
use crate::error::ApiResult;
use crate::extract::{time_param, ValidJson, ValidQuery};
use crate::wire::{AttemptOut, DeliveryOut, List, MessageOut, MessageSummary};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants/{tid}/messages", get(list).post(create))
        .route("/api/v1/tenants/{tid}/messages/{mid}", get(read))
        .route(
            "/api/v1/tenants/{tid}/messages/{mid}/attempts",
            get(message_attempts),
        )
        .route("/api/v1/tenants/{tid}/messages/{mid}/resend", post(resend))
        .route("/api/v1/tenants/{tid}/messages/{mid}/cancel", post(cancel))
        .route("/api/v1/tenants/{tid}/attempts", get(attempts))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/messages", request_body = MessageSpec,
    responses((status = 201, body = MessageOut, description = "committed"),
              (status = 200, body = MessageOut, description = "the idempotency key was seen: the first message"),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    state: State,
    Path(tid): Path<String>,
    ValidJson(spec): ValidJson<MessageSpec>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let tenant = super::tenant_id(&tid)?;
    let parsed = spec.parse()?;
    let ingested = state.engine.ingest(&tenant, parsed).await?;
    if ingested.created {
        state.engine.metrics().ingested("http");
    }
    let status = if ingested.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(MessageOut::new(ingested.message, &ingested.deliveries)),
    ))
}

#[derive(Deserialize, Default)]
pub struct MessageQuery {
    pub event_type: Option<String>,
    /// Messages with a delivery in this status.
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A page of a tenant's messages, newest first: the list route's query, shared
/// with the dashboard.
pub async fn message_list(
    state: &AppState,
    tid: &str,
    q: MessageQuery,
) -> ApiResult<List<MessageSummary>> {
    let tenant = tenant(state, tid).await?;
    let filter = MessageFilter {
        event_type: q.event_type.filter(|t| !t.is_empty()),
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
        status: q
            .status
            .filter(|s| !s.is_empty())
            .map(|s| {
                DeliveryStatus::parse(&s).ok_or_else(|| {
                    herald_core::ValidationError::new(
                        "status",
                        "must be pending, delivering, succeeded, dead or cancelled",
                    )
                })
            })
            .transpose()?,
    };
    let page = state
        .engine
        .store()
        .list_messages(&tenant.id, filter, page(q.limit.as_deref(), q.cursor)?)
        .await?;
    Ok(List::from_page(page, MessageSummary::from))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/messages", responses((status = 200, body = List<MessageSummary>)))]
pub async fn list(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<MessageQuery>,
) -> ApiResult<Json<List<MessageSummary>>> {
    Ok(Json(message_list(&state, &tid, q).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/messages/{mid}", responses((status = 200, body = MessageOut)))]
pub async fn read(
    state: State,
    Path((tid, mid)): Path<(String, String)>,
) -> ApiResult<Json<MessageOut>> {
    let (message, deliveries) = state
        .engine
        .message(&super::tenant_id(&tid)?, &message_id(&mid)?)
        .await?;
    Ok(Json(MessageOut::new(message, &deliveries)))
}

#[derive(Deserialize, Default)]
pub struct AttemptQuery {
    pub endpoint_id: Option<String>,
    pub message_id: Option<String>,
    pub delivery_id: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A page of a tenant's attempts (of one message when `message` is given): the
/// attempt routes' query, shared with the dashboard.
pub async fn attempt_page(
    state: &AppState,
    tid: &str,
    q: AttemptQuery,
    message: Option<herald_core::MessageId>,
) -> ApiResult<List<AttemptOut>> {
    let tenant = tenant(state, tid).await?;
    if let Some(status) = &q.status {
        if !matches!(status.as_str(), "success" | "retry" | "failed") {
            return Err(herald_core::ValidationError::new(
                "status",
                "must be success, retry or failed",
            )
            .into());
        }
    }
    let filter = AttemptFilter {
        message_id: match message {
            Some(m) => Some(m),
            None => q
                .message_id
                .map(|m| herald_core::MessageId::parse(&m, "message_id"))
                .transpose()?,
        },
        endpoint_id: q
            .endpoint_id
            .map(|e| EndpointId::parse(&e, "endpoint_id"))
            .transpose()?,
        delivery_id: q
            .delivery_id
            .map(|d| herald_core::DeliveryId::parse(&d, "delivery_id"))
            .transpose()?,
        outcome: q.status,
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
    };
    let page = state
        .engine
        .store()
        .list_attempts(&tenant.id, filter, page(q.limit.as_deref(), q.cursor)?)
        .await?;
    Ok(List::from_page(page, AttemptOut::from))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/attempts", responses((status = 200, body = List<AttemptOut>)))]
pub async fn attempts(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<AttemptQuery>,
) -> ApiResult<Json<List<AttemptOut>>> {
    Ok(Json(attempt_page(&state, &tid, q, None).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/messages/{mid}/attempts", responses((status = 200, body = List<AttemptOut>)))]
pub async fn message_attempts(
    state: State,
    Path((tid, mid)): Path<(String, String)>,
    ValidQuery(q): ValidQuery<AttemptQuery>,
) -> ApiResult<Json<List<AttemptOut>>> {
    let message = message_id(&mid)?;
    state
        .engine
        .message(&super::tenant_id(&tid)?, &message)
        .await?;
    Ok(Json(attempt_page(&state, &tid, q, Some(message)).await?))
}

/// Resend to one endpoint, or (without a body or `endpoint_id`) to every target.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendSpec {
    pub endpoint_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveriesOut {
    pub deliveries: Vec<DeliveryOut>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/messages/{mid}/resend", request_body = ResendSpec, responses((status = 202, body = DeliveriesOut)))]
pub async fn resend(
    state: State,
    Path((tid, mid)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<DeliveriesOut>)> {
    let spec: ResendSpec = crate::extract::optional_json(&body)?;
    let endpoint = spec
        .endpoint_id
        .map(|e| EndpointId::parse(&e, "endpoint_id"))
        .transpose()?;
    let added = state
        .engine
        .resend(
            &super::tenant_id(&tid)?,
            &message_id(&mid)?,
            endpoint.as_ref(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeliveriesOut {
            deliveries: added.iter().map(DeliveryOut::from).collect(),
        }),
    ))
}

/// Cancel one pending delivery, or (without one) every pending delivery of the message.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSpec {
    pub delivery_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelledOut {
    pub cancelled: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/messages/{mid}/cancel", request_body = CancelSpec, responses((status = 200, body = CancelledOut)))]
pub async fn cancel(
    state: State,
    Path((tid, mid)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CancelledOut>> {
    let spec: CancelSpec = crate::extract::optional_json(&body)?;
    let one = spec.delivery_id.map(|d| delivery_id(&d)).transpose()?;
    let cancelled = state
        .engine
        .cancel(&super::tenant_id(&tid)?, &message_id(&mid)?, one.as_ref())
        .await?;
    Ok(Json(CancelledOut {
        cancelled: cancelled.iter().map(|d| d.to_string()).collect(),
    }))
}
