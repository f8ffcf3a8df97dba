//! One run through herald: make the endpoints, push the messages in, wait until
//! the receiver has every delivery, and turn the arrivals into figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::Herald;
use crate::receiver::Arrivals;

/// Whether herald runs with an admin token and producers present a tenant token
/// (`--tenant-token`), as in a multi-tenant deployment.
pub(crate) static TENANT_TOKENS: AtomicBool = AtomicBool::new(false);

/// The admin token herald runs with under `--tenant-token`.
pub(crate) const ADMIN_TOKEN: &str = "bench-admin-token";

fn client(bearer: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = bearer {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// A client for setting herald up: with the admin token under `--tenant-token`.
pub(crate) fn admin_client() -> anyhow::Result<reqwest::Client> {
    client(TENANT_TOKENS.load(Ordering::Relaxed).then_some(ADMIN_TOKEN))
}

/// A client for the producers: with a new token of the tenant `bench` under
/// `--tenant-token`.
async fn producer_client(base: &str) -> anyhow::Result<reqwest::Client> {
    if !TENANT_TOKENS.load(Ordering::Relaxed) {
        return client(None);
    }
    let made: Value = post(
        &admin_client()?,
        &format!("{base}/api/v1/tenants/bench/tokens"),
        json!({"name": "producers"}),
    )
    .await?;
    let token = made["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token in {made}"))?;
    client(Some(token))
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Figures {
    pub(crate) ingest_per_s: f64,
    pub(crate) delivered_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) duplicates: usize,
    /// Attempts answered 500 by the failing endpoints (scenario c).
    pub(crate) failed_attempts: usize,
    /// Broker messages committed and acknowledged per second (scenario e).
    pub(crate) acked_per_s: f64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) cpu_s: f64,
}

pub(crate) fn payload(n: usize) -> Value {
    json!({"n": n, "data": "x".repeat(1000)})
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Posts `body` and reads the answer as a `T` (a `Value`, or only the fields a
/// caller needs: a producer reads only the id of a 201, so the load generator
/// spends no more per message than it must).
pub(crate) async fn post<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    body: Value,
) -> anyhow::Result<T> {
    let r = http.post(url).json(&body).send().await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}

/// What a producer reads of a 201.
#[derive(serde::Deserialize)]
pub(crate) struct Created {
    pub(crate) id: String,
}

/// The endpoints of a run: `healthy` ones at the receiver, `failing` ones at its
/// `/fail` route (answered 500, retried by a short fixed schedule).
#[derive(Clone, Copy)]
pub(crate) struct Endpoints {
    pub(crate) healthy: usize,
    pub(crate) failing: usize,
}

/// Messages sent → when they were sent, keyed as the receiver keys arrivals.
pub(crate) type Sent = HashMap<String, Instant>;

pub(crate) async fn create_endpoints(
    base: &str,
    target: &str,
    endpoints: Endpoints,
) -> anyhow::Result<()> {
    let http = admin_client()?;
    post::<Value>(
        &http,
        &format!("{base}/api/v1/tenants"),
        json!({"id": "bench"}),
    )
    .await?;
    let failing = target.replace("/hook", "/fail");
    let urls = std::iter::repeat_n(target, endpoints.healthy)
        .chain(std::iter::repeat_n(failing.as_str(), endpoints.failing));
    for url in urls {
        post::<Value>(
            &http,
            &format!("{base}/api/v1/tenants/bench/endpoints"),
            json!({"url": url, "max_in_flight": 64,
                   "retry_policy": {"delays_seconds": [0.5, 1.0, 2.0]}}),
        )
        .await?;
    }
    Ok(())
}

/// Posts `messages` of `event_type` to the native API with `http`, spread over the
/// processes in `bases`.
pub(crate) async fn ingest_http(
    http: reqwest::Client,
    bases: &[String],
    concurrency: usize,
    messages: usize,
    event_type: &'static str,
) -> anyhow::Result<Sent> {
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let http = http.clone();
        let urls: Vec<String> = bases
            .iter()
            .map(|base| format!("{base}/api/v1/tenants/bench/messages"))
            .collect();
        let step = concurrency;
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in (worker..messages).step_by(step) {
                let at = Instant::now();
                let body = json!({"event_type": event_type, "payload": payload(n)});
                let created: Created = post(&http, &urls[n % urls.len()], body).await?;
                sent.push((created.id, at));
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Sent::new();
    for t in tasks {
        sent.extend(t.await??);
    }
    Ok(sent)
}

/// Waits until every sent message reached each of `per_message` healthy
/// endpoints, then measures the run that began at `started`.
pub(crate) async fn measure(
    heralds: &[Herald],
    arrivals: &Arc<Arrivals>,
    sent: &Sent,
    per_message: usize,
    started: Instant,
    cpu_before: f64,
) -> anyhow::Result<Figures> {
    let ingested = started.elapsed();
    let messages = sent.len();
    let expected = messages * per_message;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let arrived: usize = arrivals.seen.lock().unwrap().values().map(Vec::len).sum();
        if arrived >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {arrived} of {expected} deliveries arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = arrivals.seen.lock().unwrap();
    let last = seen.values().flatten().max().copied().unwrap_or(started);
    let mut latencies: Vec<f64> = seen
        .iter()
        .filter_map(|(id, times)| {
            Some((times.iter().min()?.duration_since(*sent.get(id)?)).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let duplicates = seen
        .values()
        .map(|t| t.len().saturating_sub(per_message))
        .sum();
    Ok(Figures {
        ingest_per_s: messages as f64 / ingested.as_secs_f64(),
        delivered_per_s: expected as f64 / (last - started).as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or_default(),
        duplicates,
        failed_attempts: arrivals.failures(),
        acked_per_s: 0.0,
        peak_rss_mib: heralds.iter().map(Herald::peak_rss_mib).sum(),
        cpu_s: heralds.iter().map(Herald::cpu_seconds).sum::<f64>() - cpu_before,
    })
}

/// Pushes `messages` through the herald processes in `heralds` (spread over
/// them) to `endpoints`, and measures.
pub(crate) async fn through_herald(
    heralds: &[Herald],
    target: &str,
    arrivals: &Arc<Arrivals>,
    concurrency: usize,
    messages: usize,
    endpoints: Endpoints,
) -> anyhow::Result<Figures> {
    arrivals.reset();
    create_endpoints(&heralds[0].base, target, endpoints).await?;
    let producers = producer_client(&heralds[0].base).await?;
    let cpu_before: f64 = heralds.iter().map(Herald::cpu_seconds).sum();
    let bases: Vec<String> = heralds.iter().map(|h| h.base.clone()).collect();
    let started = Instant::now();
    let sent = ingest_http(producers, &bases, concurrency, messages, "bench.event").await?;
    measure(
        heralds,
        arrivals,
        &sent,
        endpoints.healthy,
        started,
        cpu_before,
    )
    .await
}
