//! The broker misbehaving: every connection closed by force, and herald split into
//! a consumer-only and a worker-only process sharing one PostgreSQL database.
//!
//! A test binary of its own: closing every connection on the broker would disturb
//! any other AMQP test running beside it, and cargo runs test binaries one at a time.

use std::time::Duration;

use serde_json::json;

/// The store `spawn_app` uses here.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

#[path = "../it/helpers.rs"]
mod helpers;

use helpers::{eventually, spawn_app_with, test_schema_for, Broker, Process, Receiver};

async fn metric_at_least(base: &str, name: &str, at_least: u64) -> Option<()> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())?;
    (value >= at_least).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_amqp),
    ignore = "set HERALD_TEST_AMQP_URL to run the RabbitMQ tests"
)]
async fn a_forced_connection_close_is_survived_and_counted() {
    let url = std::env::var("HERALD_TEST_AMQP_URL").unwrap();
    let queue = Broker::queue_name("faults");
    let q = queue.clone();
    let app = spawn_app_with(move |c| {
        c.amqp_url = Some(serde_json::from_value(json!(url)).unwrap());
        c.amqp_queue = q;
    })
    .await;
    eventually(
        "the consumer to connect",
        Duration::from_secs(20),
        || async {
            let (_, body) = app.get("/readyz").await;
            (body["broker"] == "connected").then_some(())
        },
    )
    .await;
    let status = tokio::task::spawn_blocking(|| {
        std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "herald fault test"])
            .status()
    })
    .await
    .unwrap()
    .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl close_all_connections");
    eventually(
        "a reconnection to be counted",
        Duration::from_secs(30),
        || metric_at_least(&app.base, "amqp_reconnects_total", 1),
    )
    .await;
    eventually(
        "the consumer to be back",
        Duration::from_secs(30),
        || async {
            let (status, body) = app.get("/readyz").await;
            (status.is_success() && body["broker"] == "connected").then_some(())
        },
    )
    .await;
    let broker = Broker::connect().await;
    let rx = Receiver::start().await;
    let body =
        json!({"target_url": rx.url("/after"), "hmac_secret": "k", "payload": {"after": true}});
    broker
        .publish(
            &queue,
            "SendCallback",
            "application/json",
            body.to_string().as_bytes(),
        )
        .await;
    rx.wait_for("/after", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(herald_amqp, herald_pg)),
    ignore = "set HERALD_TEST_AMQP_URL and HERALD_TEST_DATABASE_URL to run the split-process test"
)]
async fn a_consumer_only_and_a_worker_only_process_work_together() {
    let amqp = std::env::var("HERALD_TEST_AMQP_URL").unwrap();
    let queue = Broker::queue_name("split");
    let schema = test_schema_for(helpers::Backend::Postgres).await.unwrap();
    let env = [
        ("HERALD_AMQP_URL", amqp.as_str()),
        ("HERALD_AMQP_QUEUE", queue.as_str()),
    ];
    let consumer = Process::start(&schema.url(), &["--consumer"], &env).await;
    let _worker = Process::start(&schema.url(), &["--workers"], &env).await;
    eventually(
        "the consumer to connect",
        Duration::from_secs(20),
        || async {
            let body: serde_json::Value = reqwest::get(format!("{}/readyz", consumer.base()))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["broker"] == "connected").then_some(())
        },
    )
    .await;
    let broker = Broker::connect().await;
    let rx = Receiver::start().await;
    for n in 0..20 {
        let body = json!({"target_url": rx.url("/split"), "hmac_secret": "k", "payload": {"n": n}});
        broker
            .publish(
                &queue,
                "SendCallback",
                "application/json",
                body.to_string().as_bytes(),
            )
            .await;
    }
    rx.wait_for("/split", 20).await;
}
