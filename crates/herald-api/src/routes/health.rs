//! `/healthz` (the process answers), `/readyz` (the store answers) and `/metrics`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::State;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

pub fn metrics_router() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus (OpenMetrics text) of every metric; unauthenticated. The gauges of
/// open work are read from the store at each scrape.
async fn metrics(state: State) -> impl axum::response::IntoResponse {
    let now = chrono::Utc::now().timestamp_millis();
    if let Ok(open) = state.engine.store().open_stats(now).await {
        let age = open
            .oldest_due
            .map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0);
        state
            .engine
            .metrics()
            .set_open(open.pending, open.delivering, age);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics().encode(),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers and, when this process consumes AMQP, the broker
/// link is up.
async fn readyz(state: State) -> (StatusCode, Json<Value>) {
    let store = state.engine.store().ping().await;
    let broker = state
        .broker
        .as_ref()
        .map(|b| b.load(std::sync::atomic::Ordering::Acquire));
    let ready = store.is_ok() && broker != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store.map_or_else(|e| e.to_string(), |()| "ok".into()),
        "broker": broker.map(|up| if up { "connected" } else { "disconnected" }),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
