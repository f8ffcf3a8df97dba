//! Seed 003's own contract, `/api/v1/webhooks/*`, as thin routes over the same
//! engine and store as the native API.
//!
//! `configure` gives a tenant one *default endpoint* (created with the tenant when
//! needed), marked by its description, which signs like seed 003
//! (`X-Webhook-Signature: sha256=<hex>` over the body, `X-Timestamp`). `send`
//! fans out to the tenant's endpoints, or goes to `target_url` with the default
//! endpoint's signing, headers and auth. `receive` checks a signature with a
//! tenant's secret and needs no token.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use herald_core::delivery::AdHocTarget;
use herald_core::endpoint::{Endpoint, EndpointSpec, TargetAuth};
use herald_core::message::MessageSpec;
use herald_core::retry::RetryPolicySpec;
use herald_core::signing::SignatureScheme;
use herald_core::{DeliveryId, MessageId, TenantId, ValidationError};
use herald_store::{DeadLetterFilter, PageRequest, ReplaySelector, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::monitoring::stats_of;
use super::State;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidJson, ValidQuery};
use crate::wire::time;
use crate::AppState;

mod config;

use config::default_endpoint;
pub use config::*;

/// Marks the endpoint `configure` manages.
const DEFAULT_ENDPOINT: &str = "default endpoint (POST /api/v1/webhooks/configure)";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/webhooks/configure", post(configure))
        .route("/api/v1/webhooks/send", post(send))
        .route("/api/v1/webhooks/configs", get(configs))
        .route("/api/v1/webhooks/metrics/{tenant_id}", get(metrics))
        .route("/api/v1/webhooks/dead-letter", get(dead_letters))
        .route("/api/v1/webhooks/retry/{event_id}", post(retry))
        .route("/api/v1/webhooks/config/{tenant_id}", delete(remove))
}

/// Needs no token: it checks a signature instead.
pub fn open_router() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/webhooks/receive", post(receive))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    pub tenant_id: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub target_url: Option<String>,
    pub custom_headers: Option<BTreeMap<String, String>>,
    /// `Low`, `Medium`, `High` or `Critical`; kept in the message's context.
    pub severity: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SentOut {
    pub event_id: String,
    pub tenant_id: String,
    pub deliveries: usize,
}

#[utoipa::path(post, path = "/api/v1/webhooks/send", request_body = SendSpec, responses((status = 202, body = SentOut)))]
pub async fn send(
    state: State,
    ValidJson(spec): ValidJson<SendSpec>,
) -> ApiResult<(StatusCode, Json<SentOut>)> {
    let tenant = TenantId::parse(&spec.tenant_id, "tenant_id")?;
    if let Some(severity) = &spec.severity {
        if !["low", "medium", "high", "critical"].contains(&severity.to_ascii_lowercase().as_str())
        {
            return Err(
                ValidationError::new("severity", "must be Low, Medium, High or Critical").into(),
            );
        }
    }
    let mut context = match spec.context {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ValidationError::new("context", "must be an object").into()),
        None => Default::default(),
    };
    if let Some(severity) = spec.severity {
        context.insert("severity".into(), Value::String(severity));
    }
    let message = MessageSpec {
        event_type: spec.event_type,
        payload: spec.payload,
        idempotency_key: None,
        headers: spec.custom_headers,
        context: (!context.is_empty()).then_some(Value::Object(context)),
        endpoint_ids: None,
    }
    .parse()?;
    let ingested = match spec.target_url {
        None => state.engine.ingest(&tenant, message).await?,
        Some(url) => {
            herald_core::endpoint::validate_url(&url, "target_url")?;
            let base = default_endpoint(&state, &tenant)
                .await?
                .ok_or_else(|| ValidationError::new("target_url", "the tenant has no configuration to sign with: POST /api/v1/webhooks/configure first"))?;
            let target = AdHocTarget {
                url,
                method: base.method.clone(),
                signature: base.signature.clone(),
                headers: base.headers.clone(),
                retry_policy: base.retry_policy.clone(),
                auth: base.auth.clone(),
                timeout_seconds: Some(base.timeout_seconds),
                user_agent: base.user_agent.clone(),
            };
            state.engine.ingest_adhoc(&tenant, message, target).await?
        }
    };
    if ingested.created {
        state.engine.metrics().ingested("http");
    }
    let out = SentOut {
        event_id: ingested.message.id.to_string(),
        tenant_id: tenant.to_string(),
        deliveries: ingested.deliveries.len(),
    };
    Ok((StatusCode::ACCEPTED, Json(out)))
}

/// Seed 003's metrics of a tenant.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MetricsOut {
    pub total_events: u64,
    pub successful_events: u64,
    pub failed_events: u64,
    pub pending_retries: u64,
    pub dead_letter_count: u64,
    pub avg_response_time_ms: f64,
    pub last_updated: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/metrics/{tenant_id}", responses((status = 200, body = MetricsOut)))]
pub async fn metrics(state: State, Path(tid): Path<String>) -> ApiResult<Json<MetricsOut>> {
    let tenant = super::tenant(&state, &tid).await?;
    let s = stats_of(&state, &tenant.id).await?;
    Ok(Json(MetricsOut {
        total_events: s.total_events,
        successful_events: s.successful_events,
        failed_events: s.failed_events,
        pending_retries: s.pending_retries,
        dead_letter_count: s.dead_letter_count,
        avg_response_time_ms: s.avg_response_time_ms,
        last_updated: s.last_updated,
    }))
}

#[derive(Deserialize)]
pub struct DeadLetterQuery {
    tenant_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadEventOut {
    /// The event as it was sent.
    #[schema(value_type = Object)]
    pub event: Value,
    /// Every try, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Value>,
    pub failed_at: Option<String>,
    pub failure_reason: Option<String>,
    pub can_retry: bool,
}

#[utoipa::path(get, path = "/api/v1/webhooks/dead-letter", responses((status = 200, body = Vec<DeadEventOut>)))]
pub async fn dead_letters(
    state: State,
    ValidQuery(q): ValidQuery<DeadLetterQuery>,
) -> ApiResult<Json<Vec<DeadEventOut>>> {
    let tenant = super::tenant(&state, &q.tenant_id).await?;
    let store = state.engine.store();
    let page = store
        .list_dead_letters(
            &tenant.id,
            DeadLetterFilter::default(),
            PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await?;
    let mut out = Vec::with_capacity(page.data.len());
    for dead in page.data {
        let d = &dead.delivery;
        let message = store.get_message(&d.tenant_id, &d.message_id).await?;
        let filter = herald_store::AttemptFilter {
            delivery_id: Some(d.id.clone()),
            ..Default::default()
        };
        let mut attempts = store
            .list_attempts(
                &tenant.id,
                filter,
                PageRequest {
                    limit: 500,
                    cursor: None,
                },
            )
            .await?
            .data;
        attempts.reverse();
        out.push(DeadEventOut {
            event: json!({
                "id": d.message_id,
                "delivery_id": d.id,
                "tenant_id": d.tenant_id,
                "event_type": dead.event_type,
                "payload": message.as_ref().and_then(|m| serde_json::from_str::<Value>(&m.payload).ok()),
                "context": message.as_ref().and_then(|m| m.context.clone()),
                "target_url": dead.url,
                "created_at": message.as_ref().map(|m| time(m.created_at)),
            }),
            attempts: attempts.into_iter().map(|a| serde_json::to_value(crate::wire::AttemptOut::from(a)).unwrap_or_default()).collect(),
            failed_at: d.dead_at.map(time),
            failure_reason: d.dead_reason.clone(),
            can_retry: dead.replayable,
        });
    }
    Ok(Json(out))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetriedOut {
    pub event_id: String,
    pub status: &'static str,
    pub replayed: usize,
}

/// Replays a dead letter: `event_id` is the event (message) id, whose dead
/// deliveries are replayed, or one delivery's id.
#[utoipa::path(post, path = "/api/v1/webhooks/retry/{event_id}", responses((status = 200, body = RetriedOut), (status = 404)))]
pub async fn retry(state: State, Path(event_id): Path<String>) -> ApiResult<Json<RetriedOut>> {
    let store = state.engine.store();
    let deliveries: Vec<DeliveryId> = if let Ok(id) = DeliveryId::parse(&event_id, "event_id") {
        vec![id]
    } else {
        let id =
            MessageId::parse(&event_id, "event_id").map_err(|_| ApiError::NotFound("event"))?;
        let tenant = store
            .message_tenant(&id)
            .await?
            .ok_or(ApiError::NotFound("event"))?;
        store
            .message_deliveries(&tenant, &id)
            .await?
            .into_iter()
            .filter(|d| d.status == herald_core::delivery::DeliveryStatus::Dead)
            .map(|d| d.id)
            .collect()
    };
    let mut replayed = 0;
    for id in deliveries {
        let delivery = store
            .get_delivery(&id)
            .await?
            .ok_or(ApiError::NotFound("event"))?;
        replayed += state
            .engine
            .replay(&delivery.tenant_id, ReplaySelector::One(id))
            .await?
            .len();
    }
    if replayed == 0 {
        return Err(ApiError::NotFound("dead letter"));
    }
    Ok(Json(RetriedOut {
        event_id,
        status: "retrying",
        replayed,
    }))
}

/// Checks `X-Webhook-Signature: sha256=<hex>` over the body with the secret of the
/// tenant in `X-Tenant-ID`: 200 when it holds, 401 when not.
#[utoipa::path(post, path = "/api/v1/webhooks/receive", request_body(content = Object, description = "The received body, as sent"),
    responses((status = 200), (status = 401)))]
pub async fn receive(
    state: State,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let tenant = header("x-tenant-id").ok_or_else(|| {
        ValidationError::new("X-Tenant-ID", "names the tenant whose secret signs")
    })?;
    let tenant = super::tenant_id(&tenant)?;
    let endpoint = default_endpoint(&state, &tenant)
        .await?
        .ok_or(ApiError::NotFound("configuration"))?;
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    // The signature alone is checked, as seed 003's receivers do (no timestamp window).
    let valid = endpoint.signature.keys.iter().any(|key| {
        herald_core::signing::verify(&herald_core::signing::VerifyInput {
            scheme: SignatureScheme::HmacSha256Hex,
            key: &key.secret,
            headers: &pairs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-webhook-signature"))
                .map(|(n, v)| (n.clone(), v.trim_start_matches("sha256=").to_string()))
                .collect::<Vec<_>>(),
            body: &body,
            header: Some("x-webhook-signature"),
            timestamp_header: None,
            now: 0,
            tolerance_seconds: 0,
        })
        .is_ok()
    });
    if valid {
        Ok(Json(json!({"valid": true, "tenant_id": tenant})))
    } else {
        Err(ApiError::Unauthorized)
    }
}
