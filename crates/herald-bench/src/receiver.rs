//! The benchmark's receiver: as little work per request as a real receiver could
//! do (read the id, note the time, answer 200), so that what is measured is the
//! sender. Requests to `/fail` are answered 500 and only counted: the failing
//! endpoints of scenario (c).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

#[derive(Default)]
pub struct Arrivals {
    /// Message id (or the sender's `x-bench-id`) → arrival times (more than one
    /// per endpoint: a duplicate).
    pub seen: Mutex<HashMap<String, Vec<Instant>>>,
    /// Requests answered 500 at `/fail`.
    pub failures: AtomicUsize,
}

async fn receive(
    State(arrivals): State<Arc<Arrivals>>,
    uri: Uri,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    let now = Instant::now();
    if uri.path() == "/fail" {
        arrivals.failures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = headers
        .get("x-bench-id")
        .or_else(|| headers.get("x-event-id"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    arrivals
        .seen
        .lock()
        .unwrap()
        .entry(id)
        .or_default()
        .push(now);
    StatusCode::OK
}

/// Starts the receiver on 127.0.0.1 and returns its address and arrivals.
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<Arrivals>)> {
    let arrivals = Arc::new(Arrivals::default());
    let router = axum::Router::new()
        .fallback(receive)
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((addr, arrivals))
}

impl Arrivals {
    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
        self.failures.store(0, Ordering::Relaxed);
    }

    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }
}
