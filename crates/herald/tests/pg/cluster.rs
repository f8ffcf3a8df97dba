//! Several herald processes on one PostgreSQL database: every message arrives
//! exactly once, a killed process's work is taken over, ordered endpoints keep
//! their order across processes, work ingested by one process wakes another, and
//! endpoints made or changed through one process are used so by the others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use herald_store::postgres::test_schema::TestSchema;

use crate::helpers::{eventually, post_ok, test_schema, Process, Receiver, Reply};

/// Settings that make failover quick enough to test.
const FAST_FAILOVER: &[(&str, &str)] = &[
    ("HERALD_NODE_TIMEOUT_SECONDS", "2"),
    ("HERALD_LEASE_MARGIN_SECONDS", "1"),
    ("HERALD_DATABASE_POOL_SIZE", "8"),
];

async fn open_deliveries(url: &str) -> i64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    open
}

/// Sends `count` messages spread over `bases` with `concurrency` senders; returns
/// the acknowledged message ids.
async fn send_spread(bases: &[String], count: usize, concurrency: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, bases) = (http.clone(), bases.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..count).step_by(concurrency) {
                let base = &bases[n % bases.len()];
                let body = json!({"event_type": "load", "payload": {"n": n}});
                let answer =
                    post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), body).await;
                ids.push(answer["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

fn arrivals(rx: &Receiver, path: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.requests(path) {
        *seen
            .entry(r.header("x-event-id").unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

/// Makes the tenant `acme` with one endpoint; answers the endpoint as made.
async fn setup(base: &str, endpoint: Value) -> Value {
    let http = reqwest::Client::new();
    post_ok(
        &http,
        &format!("{base}/api/v1/tenants"),
        json!({"id": "acme"}),
    )
    .await;
    post_ok(
        &http,
        &format!("{base}/api/v1/tenants/acme/endpoints"),
        endpoint,
    )
    .await
}

herald_test! {
async fn three_processes_deliver_every_message_exactly_once() {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Process::start(&schema.url(), &[], FAST_FAILOVER).await);
    }
    let bases: Vec<String> = nodes.iter().map(Process::base).collect();
    setup(&bases[0], json!({"url": rx.url("/once"), "max_in_flight": 20})).await;
    let sent = send_spread(&bases, 5_000, 24).await;
    assert_eq!(sent.len(), 5_000);
    eventually("every delivery to close", Duration::from_secs(120), || async {
        (open_deliveries(&schema.url()).await == 0).then_some(())
    })
    .await;
    let seen = arrivals(&rx, "/once");
    assert_eq!(seen.len(), 5_000, "every message arrived");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "no message arrived twice: {twice:?}");
}
}

herald_test! {
async fn a_killed_process_s_work_is_taken_over() {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    rx.default_reply("/take", Reply::status(200).delay(Duration::from_millis(40)));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Process::start(&schema.url(), &[], FAST_FAILOVER).await);
    }
    let bases: Vec<String> = nodes.iter().map(Process::base).collect();
    setup(&bases[0], json!({"url": rx.url("/take"), "max_in_flight": 4, "timeout_seconds": 2})).await;
    let sent = send_spread(&bases, 1_500, 12).await;
    rx.wait_for("/take", 300).await;
    nodes[1].kill();
    let before = rx.requests("/take").len();
    assert!(before < 1_500, "the kill came mid-delivery ({before} of 1500 arrived)");
    let seen = eventually("every acknowledged message to arrive", Duration::from_secs(120), || async {
        let seen = arrivals(&rx, "/take");
        sent.iter().all(|id| seen.contains_key(id)).then_some(seen)
    })
    .await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert!(duplicates <= 4, "duplicates are bounded by the killed process's requests in flight (4), got {duplicates}");
}
}

herald_test! {
async fn an_ordered_endpoint_keeps_its_order_across_processes() {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    rx.script("/ordered", [Reply::status(500), Reply::status(502)]);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Process::start(&schema.url(), &[], FAST_FAILOVER).await);
    }
    let bases: Vec<String> = nodes.iter().map(Process::base).collect();
    setup(&bases[0], json!({"url": rx.url("/ordered"), "mode": "ordered", "retry_policy": {"delays_seconds": [0.3, 0.3, 0.3]}})).await;
    let http = reqwest::Client::new();
    for n in 0..12 {
        let base = &bases[n % 3];
        post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), json!({"event_type": "o", "payload": {"n": n}})).await;
    }
    let got = rx.wait_for_within("/ordered", 14, Duration::from_secs(60)).await;
    let order: Vec<i64> = got.iter().map(|r| r.json()["n"].as_i64().unwrap()).collect();
    let mut expected = vec![0, 0];
    expected.extend(0..12);
    assert_eq!(order, expected);
    assert_eq!(rx.max_in_flight(), 1, "one request in flight across all processes");
}
}

herald_test! {
async fn work_ingested_by_one_process_wakes_another() {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    // Polling every 30 s: only the notification can deliver within the deadline.
    let slow_poll = [("HERALD_POLL_INTERVAL_SECONDS", "30"), ("HERALD_DATABASE_POOL_SIZE", "4")];
    let api = Process::start(&schema.url(), &["--api"], &slow_poll).await;
    let _worker = Process::start(&schema.url(), &["--workers"], &slow_poll).await;
    setup(&api.base(), json!({"url": rx.url("/woken")})).await;
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        let started = Instant::now();
        post_ok(&http, &format!("{}/api/v1/tenants/acme/messages", api.base()), json!({"event_type": "w", "payload": {"n": n}})).await;
        rx.wait_for_within("/woken", n + 1, Duration::from_secs(5)).await;
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("cross-process pick-up: slowest of 10 was {slowest:?}");
    let (status, _) = {
        let r = http.get(format!("{}/api/v1/tenants", _worker.base())).send().await.unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 404, "a workers-only process serves no management API");
}
}

/// Two processes on a schema of their own, and a receiver.
async fn two_processes() -> (TestSchema, Receiver, Process, Process) {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    let one = Process::start(&schema.url(), &[], FAST_FAILOVER).await;
    let other = Process::start(&schema.url(), &[], FAST_FAILOVER).await;
    (schema, rx, one, other)
}

/// Posts a message through the process at `base`; answers the 201's body.
async fn send(http: &reqwest::Client, base: &str) -> Value {
    let url = format!("{base}/api/v1/tenants/acme/messages");
    post_ok(http, &url, json!({"event_type": "c", "payload": {}})).await
}

/// Changes the endpoint's URL through the process at `base`.
async fn change_url(http: &reqwest::Client, base: &str, endpoint: &Value, url: &str) {
    let path = format!(
        "{base}/api/v1/tenants/acme/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    let changed = http
        .patch(&path)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert!(
        changed.status().is_success(),
        "{}",
        changed.text().await.unwrap()
    );
}

herald_test! {
async fn an_endpoint_made_through_one_process_gets_what_another_ingests() {
    let (_schema, rx, one, other) = two_processes().await;
    setup(&one.base(), json!({"url": rx.url("/first")})).await;
    let http = reqwest::Client::new();
    // The other process now holds the tenant's one endpoint in memory.
    let before = send(&http, &other.base()).await;
    assert_eq!(before["deliveries"].as_array().unwrap().len(), 1);
    post_ok(&http, &format!("{}/api/v1/tenants/acme/endpoints", one.base()), json!({"url": rx.url("/second")})).await;
    let id = eventually("a message through the other process to fan out to both", Duration::from_secs(10), || async {
        let answer = send(&http, &other.base()).await;
        (answer["deliveries"].as_array().unwrap().len() == 2).then(|| answer["id"].as_str().unwrap().to_string())
    })
    .await;
    let arrived = rx.wait_for("/second", 1).await;
    assert_eq!(arrived[0].header("x-event-id"), Some(id.as_str()));
}
}

herald_test! {
async fn an_endpoint_changed_through_one_process_is_sent_anew_by_another() {
    let (_schema, rx, one, other) = two_processes().await;
    let http = reqwest::Client::new();
    let endpoint = setup(&one.base(), json!({"url": rx.url("/old")})).await;
    // The other process delivers what it ingests: its scheduler now holds the endpoint.
    send(&http, &other.base()).await;
    rx.wait_for("/old", 1).await;
    change_url(&http, &one.base(), &endpoint, &rx.url("/new")).await;
    eventually("a message through the other process to go to the new URL", Duration::from_secs(10), || async {
        send(&http, &other.base()).await;
        (!rx.requests("/new").is_empty()).then_some(())
    })
    .await;
}
}

herald_test! {
async fn a_change_made_while_a_process_was_not_listening_still_reaches_it() {
    let (schema, rx, one, other) = two_processes().await;
    let http = reqwest::Client::new();
    let endpoint = setup(&one.base(), json!({"url": rx.url("/first")})).await;
    // Once the other process has applied both endpoint changes (made, changed), it
    // has heard of every change so far; the message after that leaves the tenant's
    // endpoints in its memory.
    change_url(&http, &one.base(), &endpoint, &rx.url("/heard")).await;
    let applied = "herald_config_changes_total{kind=\"endpoint\"} 2";
    eventually("the other process to apply both endpoint changes", Duration::from_secs(10), || async {
        let metrics = http.get(format!("{}/metrics", other.base())).send().await.unwrap().text().await.unwrap();
        metrics.lines().any(|l| l == applied).then_some(())
    })
    .await;
    send(&http, &other.base()).await;
    // Both processes lose their listening connections, and the endpoint is deleted
    // (in SQL, behind herald's back) before either listens again: no notification
    // of the deletion reaches them.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&schema.url()).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let listening: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()")
        .bind(format!("%herald_config_{}%", schema.name))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(listening.len(), 2, "each process had one listening connection");
    let ended: Vec<bool> = sqlx::query_scalar("SELECT pg_terminate_backend(pid, 5000) FROM unnest($1::int[]) AS pid")
        .bind(&listening)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(ended, [true, true]);
    sqlx::query("UPDATE endpoints SET deleted = TRUE").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    eventually("a message through the other process to have no endpoint left", Duration::from_secs(10), || async {
        let answer = send(&http, &other.base()).await;
        answer["deliveries"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
}
}

herald_test! {
async fn a_token_revoked_through_one_process_is_refused_by_another() {
    const ADMIN: &str = "cluster-admin-token";
    let schema = test_schema().await.unwrap();
    let env = [("HERALD_ADMIN_TOKEN", ADMIN), ("HERALD_DATABASE_POOL_SIZE", "4")];
    let one = Process::start(&schema.url(), &[], &env).await;
    let other = Process::start(&schema.url(), &[], &env).await;
    let http = reqwest::Client::new();
    let made = http.post(format!("{}/api/v1/tenants", one.base())).bearer_auth(ADMIN).json(&json!({"id": "acme"})).send().await.unwrap();
    assert!(made.status().is_success());
    let token: Value = http.post(format!("{}/api/v1/tenants/acme/tokens", one.base())).bearer_auth(ADMIN).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let secret = token["token"].as_str().unwrap().to_string();
    let status = |base: String| {
        let (http, secret) = (http.clone(), secret.clone());
        async move {
            http.get(format!("{base}/api/v1/tenants/acme/endpoints")).bearer_auth(secret).send().await.unwrap().status().as_u16()
        }
    };
    // The other process now holds the token in memory.
    assert_eq!(status(other.base()).await, 200);
    let revoked = http.delete(format!("{}/api/v1/tenants/acme/tokens/{}", one.base(), token["id"].as_str().unwrap())).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    assert_eq!(status(one.base()).await, 401, "refused at once where it was revoked");
    eventually("the other process to refuse the revoked token", Duration::from_secs(10), || async {
        (status(other.base()).await == 401).then_some(())
    })
    .await;
}
}
