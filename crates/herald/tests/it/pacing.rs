//! How deliveries to one endpoint are paced, and that no endpoint's trouble reaches
//! another: ordered mode, max_in_flight, rate limits, the circuit breaker, and a
//! dead endpoint with a large backlog beside a healthy one.

use std::time::{Duration, Instant};

use herald_core::message::MessageSpec;
use herald_core::TenantId;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Receiver, Reply};

herald_test! {
async fn ordered_mode_keeps_order_while_the_head_retries() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/ord", [Reply::status(500), Reply::status(503)]);
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/ord"), "mode": "ordered", "max_in_flight": 10,
        "retry_policy": {"delays_seconds": [0.2, 0.2, 0.2]}}),
    )
    .await;
    for n in 1..=5 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    let got = rx.wait_for("/ord", 7).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![1, 1, 1, 2, 3, 4, 5]);
    assert_eq!(rx.max_in_flight(), 1);
}
}

herald_test! {
async fn concurrent_mode_respects_max_in_flight() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/mif", Reply::status(200).delay(Duration::from_millis(150)));
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/mif"), "max_in_flight": 3}))
        .await;
    for n in 0..12 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    rx.wait_for("/mif", 12).await;
    assert_eq!(rx.max_in_flight(), 3);
}
}

herald_test! {
async fn rate_limit_spreads_requests() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/rate"), "rate_limit_per_second": 4}),
    )
    .await;
    for n in 0..8 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    let got = rx.wait_for("/rate", 8).await;
    let span = got[7].at - got[0].at;
    assert!(
        span >= Duration::from_millis(900),
        "8 requests at 4/s with a burst of 4 take about 1 s, took {span:?}"
    );
}
}

herald_test! {
async fn the_circuit_breaker_pauses_without_spending_attempts() {
    let app = spawn_app_with(|c| {
        c.circuit_breaker.failure_threshold = 3;
        c.circuit_breaker.open_seconds = 1.0;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/cb", (0..3).map(|_| Reply::status(500)));
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/cb"), "max_in_flight": 1, "retry_policy": {"delays_seconds": vec![0.1; 10]}})).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.message("acme", "a", json!({"n": n})).await);
    }
    let got = rx.wait_for("/cb", 6).await;
    let pause = got[3].at - got[2].at;
    assert!(
        pause >= Duration::from_millis(900),
        "the breaker held the endpoint for its open time, paused {pause:?}"
    );
    let mut total = 0;
    for id in &ids {
        let message = app.settled("acme", id, "succeeded").await;
        total += message["deliveries"][0]["attempts"].as_i64().unwrap();
    }
    assert_eq!(total, 6, "waiting behind the open breaker cost no attempts");
}
}

herald_test! {
async fn a_dead_endpoints_backlog_does_not_slow_a_healthy_one() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/hang", Reply::status(200).delay(Duration::from_secs(60)));
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/hang"), "event_types": ["bulk"], "timeout_seconds": 20,
        "retry_policy": {"delays_seconds": [60]}}),
    )
    .await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/live"), "event_types": ["live"]}),
    )
    .await;

    // 10,000 deliveries for the dead endpoint, through the real ingest path.
    let tenant = TenantId::parse("acme", "tenant").unwrap();
    let mut tasks = Vec::new();
    for worker in 0..50 {
        let (engine, tenant) = (app.engine.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..200 {
                let spec: MessageSpec = serde_json::from_value(
                    json!({"event_type": "bulk", "payload": {"w": worker, "n": n}}),
                )
                .unwrap();
                engine.ingest(&tenant, spec.parse().unwrap()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rx.wait_for("/hang", 10).await;

    let started = Instant::now();
    for n in 0..20 {
        app.message("acme", "live", json!({"n": n})).await;
    }
    let got = rx
        .wait_for_within("/live", 20, Duration::from_secs(10))
        .await;
    let slowest = got.iter().map(|r| r.at - started).max().unwrap();
    eprintln!("healthy endpoint: 20 deliveries beside a 10,000-delivery dead backlog, last after {slowest:?}");
    assert_eq!(
        rx.requests("/hang").len(),
        10,
        "the dead endpoint holds only its own max_in_flight"
    );
}
}

/// Ingests `count` messages of `event_type` through the real ingest path, from ten
/// tasks at once; returns their ids.
async fn ingest_many(app: &crate::helpers::TestApp, event_type: &str, count: usize) -> Vec<String> {
    let tenant = TenantId::parse("acme", "tenant").unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|worker| {
            let (engine, tenant) = (app.engine.clone(), tenant.clone());
            let event_type = event_type.to_string();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (worker..count).step_by(10) {
                    let spec: MessageSpec = serde_json::from_value(
                        json!({"event_type": event_type, "payload": {"n": n}}),
                    )
                    .unwrap();
                    let ingested = engine.ingest(&tenant, spec.parse().unwrap()).await.unwrap();
                    ids.push(ingested.message.id.to_string());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

herald_test! {
async fn a_backlog_past_the_window_waits_in_the_store_and_is_sent_once() {
    const WINDOW: usize = 8;
    let app = spawn_app_with(|c| {
        c.lane_window = WINDOW;
        c.circuit_breaker.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/page", (0..20).map(|_| Reply::status(500)));
    rx.default_reply("/page", Reply::status(200).delay(Duration::from_millis(5)));
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/page"), "max_in_flight": 4,
        "retry_policy": {"delays_seconds": [0.1, 0.1, 0.1, 0.1]}}),
    )
    .await;

    // Sample what the scheduler holds for as long as the deliveries run.
    let metrics = app.engine.metrics().clone();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut most = 0;
            while !sampling.is_cancelled() {
                most = most.max(metrics.scheduler_held.get());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        }
    });
    let ids = ingest_many(&app, "a", 300).await;
    let got = rx.wait_for("/page", 320).await;
    sampling.cancel();
    let most = sampler.await.unwrap();

    for id in &ids {
        app.settled("acme", id, "succeeded").await;
    }
    let distinct: std::collections::HashSet<_> = got
        .iter()
        .filter_map(|r| r.header("x-event-id").map(String::from))
        .collect();
    assert_eq!(distinct.len(), 300, "every message arrived");
    assert_eq!(
        rx.requests("/page").len(),
        320,
        "300 successes and 20 failed tries: nothing was sent twice"
    );
    // A lane holds its window, a page read past half of it, and its requests.
    assert!(
        (1..=(2 * WINDOW + 4) as i64).contains(&most),
        "the scheduler held at most {} deliveries, held {most}",
        2 * WINDOW + 4
    );
}
}

herald_test! {
async fn an_ordered_backlog_past_the_window_keeps_its_order() {
    let app = spawn_app_with(|c| c.lane_window = 4).await;
    let rx = Receiver::start().await;
    rx.script("/ordpage", [Reply::status(500), Reply::status(503)]);
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/ordpage"), "mode": "ordered",
        "retry_policy": {"delays_seconds": [0.1, 0.1, 0.1]}}),
    )
    .await;
    for n in 1..=30 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    let got = rx.wait_for("/ordpage", 32).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = [1, 1].into_iter().chain(1..=30).collect();
    assert_eq!(order, expected);
}
}

herald_test! {
async fn new_deliveries_pass_a_window_full_of_waiting_retries() {
    let app = spawn_app_with(|c| {
        c.lane_window = 4;
        c.circuit_breaker.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/wait", (0..4).map(|_| Reply::status(500)));
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/wait"), "retry_policy": {"delays_seconds": [600]}}),
    )
    .await;
    for n in 0..4 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    // The window now holds four retries due in ten minutes.
    rx.wait_for("/wait", 4).await;
    for n in 4..7 {
        app.message("acme", "a", json!({"n": n})).await;
    }
    let got = rx
        .wait_for_within("/wait", 7, Duration::from_secs(10))
        .await;
    let later: Vec<i64> = got[4..].iter().map(|r| r.json()["n"].as_i64().unwrap()).collect();
    assert_eq!(later.len(), 3, "the new deliveries went out at once: {later:?}");
    assert!(later.iter().all(|n| (4..7).contains(n)));
}
}

herald_test! {
async fn an_ad_hoc_callback_backlog_is_paged_like_an_endpoints() {
    const WINDOW: usize = 4;
    let app = spawn_app_with(|c| {
        c.lane_window = WINDOW;
        c.adhoc_max_in_flight = 1;
        c.circuit_breaker.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/adhoc", (0..5).map(|_| Reply::status(503)));
    // Slower than the posts: a backlog builds past the window.
    rx.default_reply("/adhoc", Reply::status(200).delay(Duration::from_millis(20)));
    let metrics = app.engine.metrics().clone();
    let mut ids = Vec::new();
    let mut most = 0;
    for n in 0..40 {
        let (status, body) = app
            .post(
                "/api/v1/callbacks",
                json!({"target_url": rx.url("/adhoc"), "hmac_secret": "k",
                "payload": {"n": n}, "retry_policy": {"delays_seconds": [0.1, 0.1]}}),
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
        most = most.max(metrics.scheduler_held.get());
    }
    let got = rx.wait_for("/adhoc", 45).await;
    for id in &ids {
        app.settled("default", id, "succeeded").await;
    }
    let distinct: std::collections::HashSet<_> = got
        .iter()
        .filter_map(|r| r.header("x-event-id").map(String::from))
        .collect();
    assert_eq!(distinct.len(), 40);
    assert_eq!(rx.requests("/adhoc").len(), 45, "nothing was sent twice");
    assert!(
        most <= (2 * WINDOW + 1) as i64,
        "the scheduler held {most} callbacks, at most {} expected",
        2 * WINDOW + 1
    );
}
}
