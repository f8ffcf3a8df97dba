//! Monitoring: seed 003's per-tenant stats and seed 001's windowed metrics,
//! health and recent failures.

use std::sync::Arc;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::{TenantId, ValidationError};
use herald_store::{AttemptStats, EndpointStats, ThroughputPoint};
use serde::{Deserialize, Serialize};

use super::{tenant, State};
use crate::error::ApiResult;
use crate::extract::ValidQuery;
use crate::wire::{time, DeadLetterOut};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants/{tid}/stats", get(tenant_stats))
        .route(
            "/api/v1/tenants/{tid}/endpoint-health",
            get(endpoint_health),
        )
        .route("/api/v1/tenants/{tid}/throughput", get(throughput))
        .route("/api/v1/webhook-metrics", get(window))
        .route("/api/v1/webhook-health", get(health))
        .route("/api/v1/webhook-failures", get(failures))
}

/// Seed 003's statistics of one tenant.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantStatsOut {
    pub tenant_id: String,
    /// Messages sent.
    pub total_events: u64,
    /// Deliveries that succeeded.
    pub successful_events: u64,
    /// Tries that did not succeed.
    pub failed_events: u64,
    /// Deliveries tried and waiting for another try.
    pub pending_retries: u64,
    pub dead_letter_count: u64,
    pub avg_response_time_ms: f64,
    pub last_updated: Option<String>,
}

/// The statistics of a tenant, as seed 003's monitoring shows them.
pub async fn stats_of(state: &AppState, id: &TenantId) -> ApiResult<TenantStatsOut> {
    let s = state.engine.store().tenant_stats(id).await?;
    Ok(TenantStatsOut {
        tenant_id: id.to_string(),
        total_events: s.total_events,
        successful_events: s.successful_events,
        failed_events: s.failed_events,
        pending_retries: s.pending_retries,
        dead_letter_count: s.dead_letter_count,
        avg_response_time_ms: (s.avg_response_time_ms * 10.0).round() / 10.0,
        last_updated: s.last_updated.map(time),
    })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/stats", responses((status = 200, body = TenantStatsOut)))]
pub async fn tenant_stats(
    state: State,
    Path(tid): Path<String>,
) -> ApiResult<Json<TenantStatsOut>> {
    let tenant = tenant(&state, &tid).await?;
    Ok(Json(stats_of(&state, &tenant.id).await?))
}

#[derive(Deserialize)]
pub struct WindowQuery {
    hours: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptCounts {
    pub total: u64,
    pub success: u64,
    pub retry: u64,
    pub failed: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Latency {
    pub avg: f64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// Seed 001's delivery metrics over the last `hours`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WindowOut {
    pub window_hours: f64,
    pub since: String,
    pub tenant_id: Option<String>,
    pub attempts: AttemptCounts,
    /// Successful tries over all tries (1 when there were none).
    pub success_rate: f64,
    pub latency_ms: Latency,
}

#[utoipa::path(get, path = "/api/v1/webhook-metrics", responses((status = 200, body = WindowOut)))]
pub async fn window(
    state: State,
    ValidQuery(q): ValidQuery<WindowQuery>,
) -> ApiResult<Json<WindowOut>> {
    let hours = match q.hours.as_deref() {
        None => 24.0,
        Some(h) => h
            .parse::<f64>()
            .ok()
            .filter(|h| (0.0..=24.0 * 366.0).contains(h) && *h > 0.0)
            .ok_or_else(|| {
                ValidationError::new("hours", "must be a number of hours above 0, at most a year")
            })?,
    };
    let tenant = match &q.tenant_id {
        Some(t) => Some(tenant(&state, t).await?.id),
        None => None,
    };
    let since = chrono::Utc::now().timestamp_millis() - (hours * 3_600_000.0) as i64;
    let s = state
        .engine
        .store()
        .attempt_stats(tenant.as_ref(), since)
        .await?;
    Ok(Json(WindowOut {
        window_hours: hours,
        since: time(since),
        tenant_id: tenant.map(|t| t.to_string()),
        success_rate: success_rate(&s),
        attempts: AttemptCounts::of(&s),
        latency_ms: Latency::of(&s),
    }))
}

fn success_rate(s: &AttemptStats) -> f64 {
    if s.total == 0 {
        1.0
    } else {
        s.success as f64 / s.total as f64
    }
}

impl AttemptCounts {
    fn of(s: &AttemptStats) -> Self {
        Self {
            total: s.total,
            success: s.success,
            retry: s.retry,
            failed: s.failed,
        }
    }
}

impl Latency {
    fn of(s: &AttemptStats) -> Self {
        Self {
            avg: (s.avg_ms * 10.0).round() / 10.0,
            p50: s.p50_ms,
            p95: s.p95_ms,
            p99: s.p99_ms,
            max: s.max_ms,
        }
    }
}

#[derive(Deserialize, Default)]
pub struct EndpointHealthQuery {
    /// The window of tries, in seconds; default 3600, at most 86400.
    pub window_seconds: Option<String>,
}

/// One endpoint's health over the window, and now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointHealthOut {
    pub endpoint_id: String,
    pub url: String,
    pub active: bool,
    pub attempts: AttemptCounts,
    pub success_rate: f64,
    pub latency_ms: Latency,
    /// Deliveries waiting or being sent.
    pub open: u64,
    pub dead: u64,
    /// The circuit breaker in this process: closed, open or half_open.
    pub circuit: &'static str,
}

/// Every endpoint of a tenant with its tries over the window, its open and dead
/// deliveries and its circuit: the health route's query, shared with the dashboard.
pub async fn endpoint_health_of(
    state: &AppState,
    tid: &str,
    q: EndpointHealthQuery,
) -> ApiResult<Vec<EndpointHealthOut>> {
    let tenant = tenant(state, tid).await?;
    let window = seconds(q.window_seconds.as_deref(), "window_seconds", 3600)?.min(86_400);
    let since = chrono::Utc::now().timestamp_millis() - window * 1000;
    let store = state.engine.store();
    let mut stats: std::collections::HashMap<_, _> = store
        .endpoint_stats(&tenant.id, since)
        .await?
        .into_iter()
        .map(|s| (s.endpoint_id.clone(), s))
        .collect();
    let endpoints = store.tenant_endpoints(&tenant.id).await?;
    Ok(endpoints
        .into_iter()
        .map(|e| {
            let s = stats.remove(&e.id).unwrap_or(EndpointStats {
                endpoint_id: e.id.clone(),
                attempts: AttemptStats::default(),
                open: 0,
                dead: 0,
            });
            EndpointHealthOut {
                endpoint_id: e.id.to_string(),
                url: e.url.clone(),
                active: e.active,
                success_rate: success_rate(&s.attempts),
                attempts: AttemptCounts::of(&s.attempts),
                latency_ms: Latency::of(&s.attempts),
                open: s.open,
                dead: s.dead,
                circuit: state.engine.circuit(&e.id),
            }
        })
        .collect())
}

/// A whole number of seconds from 1 to a year, or `default`.
fn seconds(raw: Option<&str>, field: &'static str, default: i64) -> ApiResult<i64> {
    match raw {
        None | Some("") => Ok(default),
        Some(v) => Ok(v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=366 * 86_400).contains(n))
            .ok_or_else(|| {
                ValidationError::new(field, "must be a whole number of seconds from 1 to a year")
            })?),
    }
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoint-health", responses((status = 200, body = Vec<EndpointHealthOut>)))]
pub async fn endpoint_health(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<EndpointHealthQuery>,
) -> ApiResult<Json<Vec<EndpointHealthOut>>> {
    Ok(Json(endpoint_health_of(&state, &tid, q).await?))
}

#[derive(Deserialize, Default)]
pub struct ThroughputQuery {
    /// How far back, in seconds; default 300.
    pub seconds: Option<String>,
}

/// Tries per second.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ThroughputOut {
    pub since: String,
    /// Seconds with tries, oldest first: `at` (Unix ms), `success`, `failure`.
    #[schema(value_type = Vec<Object>)]
    pub points: Vec<ThroughputPoint>,
}

/// A tenant's tries per second over the last `seconds`: the throughput route's
/// query, shared with the dashboard's live chart.
pub async fn throughput_of(
    state: &AppState,
    tid: &str,
    q: ThroughputQuery,
) -> ApiResult<ThroughputOut> {
    let tenant = tenant(state, tid).await?;
    let window = seconds(q.seconds.as_deref(), "seconds", 300)?.min(3600);
    let since = chrono::Utc::now().timestamp_millis() - window * 1000;
    let points = state.engine.store().throughput(&tenant.id, since).await?;
    Ok(ThroughputOut {
        since: time(since),
        points,
    })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/throughput", responses((status = 200, body = ThroughputOut)))]
pub async fn throughput(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<ThroughputQuery>,
) -> ApiResult<Json<ThroughputOut>> {
    Ok(Json(throughput_of(&state, &tid, q).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkersOut {
    /// Whether this process delivers.
    pub running: bool,
    pub pending: u64,
    pub delivering: u64,
}

/// Seed 001's health: the store, the broker, the workers, and the lag.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthOut {
    /// `ok`, or `degraded` when the store or the broker is down.
    pub status: &'static str,
    pub store: String,
    /// `connected`, `disconnected`, or null without AMQP.
    pub broker: Option<&'static str>,
    pub workers: WorkersOut,
    /// How long the pending delivery due longest ago has waited.
    pub lag_seconds: f64,
}

#[utoipa::path(get, path = "/api/v1/webhook-health", responses((status = 200, body = HealthOut)))]
pub async fn health(state: State) -> Json<HealthOut> {
    let now = chrono::Utc::now().timestamp_millis();
    let open = state.engine.store().open_stats(now).await;
    let broker = state
        .broker
        .as_ref()
        .map(|b| b.load(std::sync::atomic::Ordering::Acquire));
    let (store, open) = match open {
        Ok(open) => ("ok".to_string(), Some(open)),
        Err(e) => (e.to_string(), None),
    };
    let healthy = open.is_some() && broker != Some(false);
    let open = open.unwrap_or_default();
    Json(HealthOut {
        status: if healthy { "ok" } else { "degraded" },
        store,
        broker: broker.map(|up| if up { "connected" } else { "disconnected" }),
        workers: WorkersOut {
            running: state.engine.is_delivering(),
            pending: open.pending,
            delivering: open.delivering,
        },
        lag_seconds: open
            .oldest_due
            .map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0),
    })
}

#[derive(Deserialize)]
pub struct FailuresQuery {
    limit: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailureOut {
    pub tenant_id: String,
    #[serde(flatten)]
    pub dead_letter: DeadLetterOut,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailuresOut {
    pub data: Vec<FailureOut>,
}

#[utoipa::path(get, path = "/api/v1/webhook-failures", responses((status = 200, body = FailuresOut)))]
pub async fn failures(
    state: State,
    ValidQuery(q): ValidQuery<FailuresQuery>,
) -> ApiResult<Json<FailuresOut>> {
    let limit = super::page(q.limit.as_deref(), None)?.limit;
    let tenant = match &q.tenant_id {
        Some(t) => Some(tenant(&state, t).await?.id),
        None => None,
    };
    let found = state
        .engine
        .store()
        .recent_failures(tenant.as_ref(), limit)
        .await?;
    let data = found
        .into_iter()
        .map(|d| FailureOut {
            tenant_id: d.delivery.tenant_id.to_string(),
            dead_letter: d.into(),
        })
        .collect();
    Ok(Json(FailuresOut { data }))
}
