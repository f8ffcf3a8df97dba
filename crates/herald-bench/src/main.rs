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

mod amqp;
mod backlog;
mod process;
mod receiver;
mod run;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use herald_store::postgres::test_schema::TestSchema;
use process::Herald;
use receiver::Arrivals;
use run::{measure, payload, through_herald, Endpoints, Figures};

#[derive(Parser)]
#[command(about = "Benchmark herald against the raw limit of this machine")]
struct Args {
    /// Scenarios to run: raw, sqlite, fanout, failing, backlog, amqp, postgres (1, 2
    /// and 3 processes), or all.
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
    /// Messages for the dead endpoint in the backlog scenario.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: usize,
    /// Messages a second to the healthy endpoint in the backlog scenario.
    #[arg(long, default_value_t = 1_000)]
    steady_rate: usize,
    /// Length of each steady phase of the backlog scenario.
    #[arg(long, default_value_t = 20)]
    steady_seconds: u64,
    /// herald runs with an admin token, and producers present a token of their
    /// tenant, as in a multi-tenant deployment (without: no authentication).
    #[arg(long)]
    tenant_token: bool,
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

/// `args.runs` runs of one scenario, each on a fresh SQLite file.
#[allow(clippy::too_many_arguments)]
async fn sqlite_runs(
    name: &str,
    dir: &Path,
    target: &str,
    arrivals: &Arc<Arrivals>,
    args: &Args,
    messages: usize,
    healthy: usize,
    failing: usize,
) -> anyhow::Result<Vec<Figures>> {
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let db = dir.join(format!("{name}-{run}.db"));
        let herald = Herald::start(&format!("sqlite://{}", db.display()), &[]).await?;
        let endpoints = Endpoints { healthy, failing };
        let heralds = std::slice::from_ref(&herald);
        runs.push(
            through_herald(
                heralds,
                target,
                arrivals,
                args.concurrency,
                messages,
                endpoints,
            )
            .await?,
        );
    }
    Ok(runs)
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
    run::TENANT_TOKENS.store(args.tenant_token, std::sync::atomic::Ordering::Relaxed);
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
        let runs = sqlite_runs(
            "sqlite",
            &dir,
            &target,
            &arrivals,
            &args,
            args.messages,
            1,
            0,
        )
        .await?;
        report("(a) SQLite, 1 process", &runs, limit);
    }
    if wants("fanout") {
        let runs = sqlite_runs(
            "fanout",
            &dir,
            &target,
            &arrivals,
            &args,
            args.messages / 10,
            10,
            0,
        )
        .await?;
        report("(b) fan-out ×10, SQLite", &runs, limit);
    }
    if wants("failing") {
        let runs = sqlite_runs(
            "failing",
            &dir,
            &target,
            &arrivals,
            &args,
            args.messages / 10,
            9,
            1,
        )
        .await?;
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
            let acked = amqp::acked(&herald, args.amqp_messages);
            let sent = amqp::ingest(
                &args.amqp_url,
                &queue,
                &target,
                args.concurrency,
                args.amqp_messages,
            )
            .await?;
            let heralds = std::slice::from_ref(&herald);
            let mut figures = measure(heralds, &arrivals, &sent, 1, started, cpu_before).await?;
            figures.acked_per_s =
                args.amqp_messages as f64 / (acked.await?? - started).as_secs_f64();
            runs.push(figures);
            amqp::delete_queue(&args.amqp_url, &queue).await?;
        }
        let (acked, acked_lo, acked_hi) = spread(&runs, |f| f.acked_per_s);
        report(
            &format!(
                "(e) AMQP, {} SendCallbacks, SQLite ({acked:.0} ({acked_lo:.0}–{acked_hi:.0}) persisted and acked/s)",
                args.amqp_messages
            ),
            &runs,
            limit,
        );
    }
    if wants("postgres") {
        for processes in 1..=3 {
            let mut runs = Vec::new();
            for _ in 0..args.runs {
                let schema = TestSchema::create(&args.database_url).await;
                let mut heralds = Vec::new();
                for _ in 0..processes {
                    heralds.push(Herald::start(&schema.url(), &[]).await?);
                }
                runs.push(
                    through_herald(
                        &heralds,
                        &target,
                        &arrivals,
                        args.concurrency,
                        args.messages,
                        Endpoints {
                            healthy: 1,
                            failing: 0,
                        },
                    )
                    .await?,
                );
                drop(heralds);
                drop(schema);
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
    if wants("backlog") {
        let db = dir.join("backlog.db");
        let settings = backlog::Settings {
            backlog: args.backlog,
            rate: args.steady_rate,
            steady_seconds: args.steady_seconds,
            idle_seconds: 10,
            concurrency: args.concurrency,
        };
        backlog::run(
            &format!("sqlite://{}", db.display()),
            &target,
            &arrivals,
            &settings,
        )
        .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
