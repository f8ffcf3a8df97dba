//! herald's HTTP API: the native `/api/v1` routes, health, and the OpenAPI document.
//!
//! Handlers only translate between the wire and the engine or store: auth is a
//! middleware, parsing lives in the extractors and the domain's `parse`, and every
//! error goes through [`error::ApiError`]. Each resource module exports its routes.

pub mod auth;
pub mod error;
pub mod extract;
mod openapi;
mod routes;
pub mod ui;
pub mod wire;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use herald_engine::Engine;

pub use openapi::ApiDoc;

/// What every handler shares.
pub struct AppState {
    pub engine: Engine,
    /// The admin bearer token; `None` leaves the API open (bound to loopback only).
    pub admin_token: Option<String>,
    pub max_body_bytes: usize,
    /// The AMQP consumer's link, when this process consumes: `/readyz` reports it.
    pub broker: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// How long a request may take, reading its body included.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which parts of the HTTP surface a process serves; health is always served.
#[derive(Clone, Copy, Debug)]
pub struct Surfaces {
    /// The management API.
    pub management: bool,
    /// `/metrics`.
    pub metrics: bool,
}

/// Counts a management API request by its route template (bounded), method and
/// status.
async fn count_request(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    state
        .engine
        .metrics()
        .api_request(&method, route, response.status().as_u16());
    response
}

/// The HTTP surface: health always, `/metrics` and the management API as chosen
/// (a process that only delivers can serve health alone).
pub fn router(state: AppState, surfaces: Surfaces) -> Router {
    let state = Arc::new(state);
    let mut router = Router::new().merge(routes::health::router());
    if surfaces.management {
        router = router
            .merge(routes::seed003::open_router())
            .merge(ui::router());
    }
    if surfaces.metrics {
        router = router.merge(routes::health::metrics_router());
    }
    if surfaces.management {
        let guard = axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
        let count = axum::middleware::from_fn_with_state(state.clone(), count_request);
        router = router.merge(routes::router().layer(guard).route_layer(count));
    }
    router
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        // A client that sends its request too slowly is cut off (408).
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}
