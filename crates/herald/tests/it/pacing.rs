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
