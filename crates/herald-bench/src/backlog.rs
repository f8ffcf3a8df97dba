//! Scenario (d): a dead endpoint's backlog beside a healthy endpoint.
//!
//! One herald on SQLite with two endpoints: one whose port refuses connections
//! (`backlog` events) and one at the receiver (`steady` events). The healthy one
//! gets a steady rate first without a backlog (the baseline), then `backlog`
//! messages are pushed in for the dead one, herald is left alone for a while (its
//! idle CPU), and the healthy one gets the same steady rate again. Reported: the
//! backlog the store holds, herald's memory at each step, its idle CPU, and the
//! healthy endpoint's latency with and without the backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::Herald;
use crate::receiver::Arrivals;
use crate::run::{admin_client, ingest_http, payload, percentile, post, Created, Sent};

/// Latency of one steady phase, in ms.
struct Steady {
    p50: f64,
    p99: f64,
    max: f64,
    /// Post sent → 201 received: the ingest's share of the latency.
    ingest_p99: f64,
    delivered: usize,
    /// The seconds of the phase (counted from its start) in which a message took
    /// longer than [`SLOW_MS`] to arrive: how many did, and the longest.
    slow: Vec<(u64, usize, f64)>,
}

/// The latency target at the steady rate; slower messages are reported by second.
const SLOW_MS: f64 = 50.0;

pub(crate) struct Settings {
    pub backlog: usize,
    pub rate: usize,
    pub steady_seconds: u64,
    pub idle_seconds: u64,
    pub concurrency: usize,
}

/// `rate` messages a second for `seconds` to the healthy endpoint, each post on
/// its own task so a slow answer does not slow the pace; then waits for them all.
async fn steady(
    herald: &Herald,
    arrivals: &Arc<Arrivals>,
    rate: usize,
    seconds: u64,
) -> anyhow::Result<Steady> {
    arrivals.reset();
    let http = admin_client()?;
    let url = format!("{}/api/v1/tenants/bench/messages", herald.base);
    const TICK_MS: u64 = 10;
    let per_tick = (rate as u64 * TICK_MS / 1000).max(1) as usize;
    let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::new();
    let started = Instant::now();
    for tick in 0..seconds * 1000 / TICK_MS {
        ticks.tick().await;
        for i in 0..per_tick {
            let (http, url) = (http.clone(), url.clone());
            let n = tick as usize * per_tick + i;
            posts.push(tokio::spawn(async move {
                let at = Instant::now();
                let body = json!({"event_type": "steady", "payload": payload(n)});
                let created: Created = post(&http, &url, body).await?;
                anyhow::Ok((created.id, at, Instant::now()))
            }));
        }
    }
    let mut sent = Sent::new();
    let mut ingest = Vec::with_capacity(posts.len());
    for p in posts {
        let (id, at, answered) = p.await??;
        ingest.push(answered.duration_since(at).as_secs_f64() * 1000.0);
        sent.insert(id, at);
    }
    ingest.sort_by(f64::total_cmp);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrived = arrivals.seen.lock().unwrap().len();
        if arrived >= sent.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {arrived} of {} steady deliveries arrived",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = arrivals.seen.lock().unwrap();
    // (second of the phase it was sent in, latency)
    let timed: Vec<(u64, f64)> = seen
        .iter()
        .filter_map(|(id, times)| {
            let at = *sent.get(id)?;
            let latency = times.iter().min()?.duration_since(at).as_secs_f64() * 1000.0;
            Some((at.duration_since(started).as_secs(), latency))
        })
        .collect();
    let mut slow: std::collections::BTreeMap<u64, (usize, f64)> = Default::default();
    for &(second, latency) in timed.iter().filter(|(_, l)| *l > SLOW_MS) {
        let entry = slow.entry(second).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(latency);
    }
    let mut latencies: Vec<f64> = timed.iter().map(|(_, l)| *l).collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Steady {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        ingest_p99: percentile(&ingest, 0.99),
        delivered: latencies.len(),
        slow: slow.into_iter().map(|(s, (n, max))| (s, n, max)).collect(),
    })
}

/// "3 s: 212 (max 439 ms), 9 s: 4 (max 61 ms)", or "none".
fn slow_seconds(slow: &[(u64, usize, f64)]) -> String {
    if slow.is_empty() {
        return "none".into();
    }
    slow.iter()
        .map(|(second, n, max)| format!("{second} s: {n} (max {max:.0} ms)"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn create_endpoints(herald: &Herald, target: &str) -> anyhow::Result<()> {
    let http = admin_client()?;
    let base = &herald.base;
    post::<Value>(
        &http,
        &format!("{base}/api/v1/tenants"),
        json!({"id": "bench"}),
    )
    .await?;
    // A port nothing listens on: every try is refused at once.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoints = [
        json!({"url": format!("http://127.0.0.1:{dead_port}/dead"), "event_types": ["backlog"], "max_in_flight": 10}),
        json!({"url": target, "event_types": ["steady"], "max_in_flight": 64}),
    ];
    for spec in endpoints {
        post::<Value>(
            &http,
            &format!("{base}/api/v1/tenants/bench/endpoints"),
            spec,
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn run(
    db: &str,
    target: &str,
    arrivals: &Arc<Arrivals>,
    settings: &Settings,
) -> anyhow::Result<()> {
    let herald = Herald::start(db, &[]).await?;
    create_endpoints(&herald, target).await?;
    let Settings {
        backlog,
        rate,
        steady_seconds,
        idle_seconds,
        concurrency,
    } = *settings;

    let baseline = steady(&herald, arrivals, rate, steady_seconds).await?;
    let rss_start = herald.rss_mib();

    let started = Instant::now();
    ingest_http(
        admin_client()?,
        std::slice::from_ref(&herald.base),
        concurrency,
        backlog,
        "backlog",
    )
    .await?;
    let fill_rate = backlog as f64 / started.elapsed().as_secs_f64();
    let rss_filled = herald.rss_mib();

    let cpu_before = herald.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let idle_cpu = (herald.cpu_seconds() - cpu_before) / idle_seconds as f64 * 100.0;
    let rss_idle = herald.rss_mib();

    let loaded = steady(&herald, arrivals, rate, steady_seconds).await?;
    let rss_end = herald.rss_mib();
    let open = herald.metric("herald_deliveries_pending").await?
        + herald.metric("herald_deliveries_in_flight").await?;
    let held = herald.metric("herald_scheduler_held_deliveries").await?;

    println!("\n(d) backlog: {backlog} messages for a dead endpoint (connection refused) pushed at {fill_rate:.0} msg/s; {open:.0} deliveries open at the end, {held:.0} of them held in memory");
    println!("| healthy endpoint at {rate} msg/s for {steady_seconds} s | delivered | p50 ms | p99 ms | max ms | ingest p99 ms |");
    println!("|---|---|---|---|---|---|");
    let phases = [
        ("without a backlog", &baseline),
        ("beside the backlog", &loaded),
    ];
    for (name, s) in phases {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.delivered, s.p50, s.p99, s.max, s.ingest_p99
        );
    }
    for (name, s) in phases {
        println!(
            "messages over {SLOW_MS} ms {name}, by second of the phase: {}",
            slow_seconds(&s.slow)
        );
    }
    println!(
        "herald RSS MiB: {rss_start:.0} before the backlog, {rss_filled:.0} after it, {rss_idle:.0} after {idle_seconds} s idle, {rss_end:.0} after the second steady phase; peak {:.0}. Idle CPU with the backlog: {idle_cpu:.1}% of one core.",
        herald.peak_rss_mib()
    );
    Ok(())
}
