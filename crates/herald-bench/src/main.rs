//! `herald-bench`: measures herald against the physical limit of this machine.
//!
//! Each scenario starts a fast receiver (in this process) and herald (the release
//! binary, in its own process), pushes messages through herald's HTTP API, and
//! reports ingest rate, end-to-end delivery rate, ingest-to-delivery latency,
//! duplicates, and herald's peak memory and CPU time. The same run measures a raw
//! reference client (one pooled HTTP client posting signed bodies straight at the
//! receiver): every rate is also given as a share of that limit.
//!
//! Reproduce: `cargo build --release -p herald -p herald-bench && target/release/herald-bench`.

mod process;
mod receiver;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use process::Herald;
use receiver::Arrivals;

#[derive(Parser)]
#[command(about = "Benchmark herald against the raw limit of this machine")]
struct Args {
    /// Scenarios to run: raw, sqlite, fanout, failing, amqp, postgres (1, 2 and 3
    /// processes), or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Messages per scenario.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Runs of each scenario (the report gives the median and the spread).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// PostgreSQL for the postgres scenario (a schema is made per run and dropped).
    #[arg(
        long,
        env = "HERALD_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// RabbitMQ for the amqp scenario (a queue is made per run and deleted).
    #[arg(
        long,
        env = "HERALD_TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// SendCallback messages published in the amqp scenario.
    #[arg(long, default_value_t = 100_000)]
    amqp_messages: usize,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Figures {
    ingest_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    duplicates: usize,
    /// Attempts answered 500 by the failing endpoints (scenario c).
    failed_attempts: usize,
    peak_rss_mib: f64,
    cpu_s: f64,
}

fn payload(n: usize) -> Value {
    json!({"n": n, "data": "x".repeat(1000)})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The physical limit: signed 1 KiB posts straight at the receiver.
async fn raw(target: &str, arrivals: &Arc<Arrivals>, args: &Args) -> anyhow::Result<f64> {
    arrivals.reset();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (http, target) = (http.clone(), target.to_string());
        let (count, step) = (args.messages, args.concurrency);
        tasks.push(tokio::spawn(async move {
            for n in (worker..count).step_by(step) {
                let body = serde_json::to_vec(&payload(n)).unwrap();
                let mut mac = Hmac::<Sha256>::new_from_slice(b"raw-secret").unwrap();
                mac.update(&body);
                let signature = hex::encode(mac.finalize().into_bytes());
                http.post(&target)
                    .header("content-type", "application/json")
                    .header("x-event-id", format!("raw-{n}"))
                    .header("x-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .unwrap_or_else(|e| eprintln!("raw post failed: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(args.messages as f64 / started.elapsed().as_secs_f64())
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let r = http.post(url).json(&body).send().await?;
    let status = r.status();
    let text = r.text().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// The endpoints of a run: `healthy` ones at the receiver, `failing` ones at its
/// `/fail` route (answered 500, retried by a short fixed schedule).
#[derive(Clone, Copy)]
struct Endpoints {
    healthy: usize,
    failing: usize,
}

/// Messages sent → when they were sent, keyed as the receiver keys arrivals.
type Sent = HashMap<String, Instant>;

async fn create_endpoints(base: &str, target: &str, endpoints: Endpoints) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    post(
        &http,
        &format!("{base}/api/v1/tenants"),
        json!({"id": "bench"}),
    )
    .await?;
    let failing = target.replace("/hook", "/fail");
    let urls = std::iter::repeat_n(target, endpoints.healthy)
        .chain(std::iter::repeat_n(failing.as_str(), endpoints.failing));
    for url in urls {
        post(
            &http,
            &format!("{base}/api/v1/tenants/bench/endpoints"),
            json!({"url": url, "max_in_flight": 64,
                   "retry_policy": {"delays_seconds": [0.5, 1.0, 2.0]}}),
        )
        .await?;
    }
    Ok(())
}

/// Posts `messages` to the native API, spread over the processes in `bases`.
async fn ingest_http(bases: &[String], args: &Args, messages: usize) -> anyhow::Result<Sent> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (http, bases) = (http.clone(), bases.to_vec());
        let step = args.concurrency;
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in (worker..messages).step_by(step) {
                let base = &bases[n % bases.len()];
                let at = Instant::now();
                let body = json!({"event_type": "bench.event", "payload": payload(n)});
                let answer = post(
                    &http,
                    &format!("{base}/api/v1/tenants/bench/messages"),
                    body,
                )
                .await?;
                sent.push((answer["id"].as_str().unwrap_or_default().to_string(), at));
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

/// Publishes `messages` SendCallbacks (seed 000's contract) to `queue`, with
/// publisher confirms, from `args.concurrency` channels.
async fn ingest_amqp(
    amqp_url: &str,
    queue: &str,
    target: &str,
    args: &Args,
    messages: usize,
) -> anyhow::Result<Sent> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let connection = Arc::new(connection);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (connection, queue, target) =
            (connection.clone(), queue.to_string(), target.to_string());
        let step = args.concurrency;
        tasks.push(tokio::spawn(async move {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            let mut sent = Vec::new();
            let mut confirms = Vec::new();
            for n in (worker..messages).step_by(step) {
                let id = format!("amqp-{n}");
                let body = json!({"target_url": target, "hmac_secret": "bench-secret",
                                  "payload": payload(n), "headers": {"x-bench-id": id}});
                let properties = lapin::BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_type("SendCallback".into())
                    .with_delivery_mode(2);
                sent.push((id, Instant::now()));
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            lapin::options::BasicPublishOptions::default(),
                            &serde_json::to_vec(&body)?,
                            properties,
                        )
                        .await?,
                );
                if confirms.len() >= 256 {
                    for confirm in confirms.drain(..) {
                        confirm.await?;
                    }
                }
            }
            for confirm in confirms {
                confirm.await?;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Sent::new();
    for t in tasks {
        sent.extend(t.await??);
    }
    connection.close(200, "bench done".into()).await?;
    Ok(sent)
}

/// Waits until every sent message reached each of `per_message` healthy
/// endpoints, then measures the run that began at `started`.
async fn measure(
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
        peak_rss_mib: heralds.iter().map(Herald::peak_rss_mib).sum(),
        cpu_s: heralds.iter().map(Herald::cpu_seconds).sum::<f64>() - cpu_before,
    })
}

/// Pushes `messages` through the herald processes in `heralds` (spread over
/// them) to `endpoints`, and measures.
async fn through_herald(
    heralds: &[Herald],
    target: &str,
    arrivals: &Arc<Arrivals>,
    args: &Args,
    messages: usize,
    endpoints: Endpoints,
) -> anyhow::Result<Figures> {
    arrivals.reset();
    create_endpoints(&heralds[0].base, target, endpoints).await?;
    let cpu_before: f64 = heralds.iter().map(Herald::cpu_seconds).sum();
    let bases: Vec<String> = heralds.iter().map(|h| h.base.clone()).collect();
    let started = Instant::now();
    let sent = ingest_http(&bases, args, messages).await?;
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

async fn delete_queue(amqp_url: &str, queue: &str) -> anyhow::Result<()> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await?;
    connection.close(200, "bench done".into()).await?;
    Ok(())
}

struct TempSchema {
    url: String,
    name: String,
}

impl TempSchema {
    async fn create(url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "herald_bench_{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(Self {
            url: url.to_string(),
            name,
        })
    }

    fn url(&self) -> String {
        herald_store::postgres::test_schema::with_search_path(&self.url, &self.name)
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await?;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(())
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64 % 1000)
}

/// Median, min and max of a figure over the runs.
fn spread(runs: &[Figures], f: impl Fn(&Figures) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn report(name: &str, runs: &[Figures], limit: f64) {
    let (ingest, ingest_lo, ingest_hi) = spread(runs, |f| f.ingest_per_s);
    let (rate, rate_lo, rate_hi) = spread(runs, |f| f.delivered_per_s);
    let (p50, ..) = spread(runs, |f| f.p50_ms);
    let (p99, p99_lo, p99_hi) = spread(runs, |f| f.p99_ms);
    let (max, ..) = spread(runs, |f| f.max_ms);
    let (rss, ..) = spread(runs, |f| f.peak_rss_mib);
    let (cpu, ..) = spread(runs, |f| f.cpu_s);
    let duplicates: usize = runs.iter().map(|f| f.duplicates).sum();
    println!(
        "| {name} | {ingest:.0} ({ingest_lo:.0}–{ingest_hi:.0}) | {rate:.0} ({rate_lo:.0}–{rate_hi:.0}) | {:.0}% | {p50:.1} | {p99:.1} ({p99_lo:.1}–{p99_hi:.1}) | {max:.1} | {duplicates} | {rss:.0} | {cpu:.1} |",
        rate / limit * 100.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wants = |s: &str| args.scenario == "all" || args.scenario.split(',').any(|x| x == s);
    let (addr, arrivals) = receiver::start().await?;
    let target = format!("http://{addr}/hook");
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let mut limits = Vec::new();
    for _ in 0..args.runs {
        limits.push(raw(&target, &arrivals, &args).await?);
    }
    limits.sort_by(f64::total_cmp);
    let limit = limits[limits.len() / 2];
    println!(
        "raw reference client: {limit:.0} signed posts/s (runs: {}), {} messages of 1 KiB, concurrency {}, {} cores\n",
        limits.iter().map(|l| format!("{l:.0}")).collect::<Vec<_>>().join(", "),
        args.messages,
        args.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| scenario | ingest msg/s | delivered/s | of raw | p50 ms | p99 ms | max ms | duplicates | peak RSS MiB | herald CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");

    if wants("sqlite") {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let db = dir.join(format!("sqlite-{run}.db"));
            let herald = Herald::start(&format!("sqlite://{}", db.display()), &[]).await?;
            runs.push(
                through_herald(
                    std::slice::from_ref(&herald),
                    &target,
                    &arrivals,
                    &args,
                    args.messages,
                    Endpoints {
                        healthy: 1,
                        failing: 0,
                    },
                )
                .await?,
            );
        }
        report("(a) SQLite, 1 process", &runs, limit);
    }
    if wants("fanout") {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let db = dir.join(format!("fanout-{run}.db"));
            let herald = Herald::start(&format!("sqlite://{}", db.display()), &[]).await?;
            runs.push(
                through_herald(
                    std::slice::from_ref(&herald),
                    &target,
                    &arrivals,
                    &args,
                    args.messages / 10,
                    Endpoints {
                        healthy: 10,
                        failing: 0,
                    },
                )
                .await?,
            );
        }
        report("(b) fan-out ×10, SQLite", &runs, limit);
    }
    if wants("failing") {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let db = dir.join(format!("failing-{run}.db"));
            let herald = Herald::start(&format!("sqlite://{}", db.display()), &[]).await?;
            runs.push(
                through_herald(
                    std::slice::from_ref(&herald),
                    &target,
                    &arrivals,
                    &args,
                    args.messages / 10,
                    Endpoints {
                        healthy: 9,
                        failing: 1,
                    },
                )
                .await?,
            );
        }
        let (failed, ..) = spread(&runs, |f| f.failed_attempts as f64);
        report(
            &format!("(c) 10 endpoints, 1 answers 500 ({failed:.0} attempts answered 500), SQLite"),
            &runs,
            limit,
        );
    }
    if wants("amqp") {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            arrivals.reset();
            let db = dir.join(format!("amqp-{run}.db"));
            let queue = format!("herald-bench-{}-{run}", std::process::id());
            let herald = Herald::start(
                &format!("sqlite://{}", db.display()),
                &[
                    ("HERALD_AMQP_URL", &args.amqp_url),
                    ("HERALD_AMQP_QUEUE", &queue),
                ],
            )
            .await?;
            let cpu_before = herald.cpu_seconds();
            let started = Instant::now();
            let sent =
                ingest_amqp(&args.amqp_url, &queue, &target, &args, args.amqp_messages).await?;
            let herald = std::slice::from_ref(&herald);
            runs.push(measure(herald, &arrivals, &sent, 1, started, cpu_before).await?);
            delete_queue(&args.amqp_url, &queue).await?;
        }
        report(
            &format!("(e) AMQP, {} SendCallbacks, SQLite", args.amqp_messages),
            &runs,
            limit,
        );
    }
    if wants("postgres") {
        for processes in 1..=3 {
            let mut runs = Vec::new();
            for _ in 0..args.runs {
                let schema = TempSchema::create(&args.database_url).await?;
                let mut heralds = Vec::new();
                for _ in 0..processes {
                    heralds.push(Herald::start(&schema.url(), &[]).await?);
                }
                runs.push(
                    through_herald(
                        &heralds,
                        &target,
                        &arrivals,
                        &args,
                        args.messages,
                        Endpoints {
                            healthy: 1,
                            failing: 0,
                        },
                    )
                    .await?,
                );
                drop(heralds);
                schema.drop_now().await?;
            }
            report(
                &format!(
                    "(f) PostgreSQL, {processes} process{}",
                    if processes > 1 { "es" } else { "" }
                ),
                &runs,
                limit,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
