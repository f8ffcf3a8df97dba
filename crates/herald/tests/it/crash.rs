//! Durability: kill -9 of the real binary mid-delivery loses no acknowledged
//! message, and a graceful shutdown lets requests in flight finish.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Receiver, Reply};

/// The herald binary, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(db: &Path, port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("HERALD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the herald binary starts");
    let process = Process(child);
    let http = reqwest::Client::new();
    eventually("herald to be ready", Duration::from_secs(20), || async {
        let answer = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    process
}

async fn post(http: &reqwest::Client, port: u16, path: &str, body: Value) -> Value {
    let response = http
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn kill_9_during_delivery_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let port = free_port();
    let rx = Receiver::start().await;
    rx.default_reply("/slow", Reply::status(200).delay(Duration::from_millis(50)));
    let http = reqwest::Client::new();

    let mut herald = serve(&db, port).await;
    post(&http, port, "/api/v1/tenants", json!({"id": "acme"})).await;
    post(
        &http,
        port,
        "/api/v1/tenants/acme/endpoints",
        json!({"url": rx.url("/slow"), "max_in_flight": 2}),
    )
    .await;
    let mut acknowledged = HashSet::new();
    for n in 0..60 {
        let message = post(
            &http,
            port,
            "/api/v1/tenants/acme/messages",
            json!({"event_type": "a", "payload": {"n": n}}),
        )
        .await;
        acknowledged.insert(message["id"].as_str().unwrap().to_string());
    }
    rx.wait_for("/slow", 5).await;
    herald.0.kill().expect("kill -9");
    herald.0.wait().unwrap();
    let before = rx.requests("/slow").len();
    assert!(
        before < 60,
        "the kill came mid-delivery ({before} of 60 delivered)"
    );

    let _herald = serve(&db, port).await;
    let delivered = eventually(
        "every acknowledged message to arrive",
        Duration::from_secs(30),
        || async {
            let seen: HashSet<String> = rx
                .requests("/slow")
                .iter()
                .filter_map(|r| r.header("x-event-id").map(String::from))
                .collect();
            acknowledged.is_subset(&seen).then_some(seen)
        },
    )
    .await;
    assert_eq!(delivered.len(), 60);
}

#[tokio::test]
async fn graceful_shutdown_lets_requests_in_flight_finish() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply(
        "/slow",
        Reply::status(200).delay(Duration::from_millis(700)),
    );
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/slow")})).await;
    let id = app.message("acme", "a", json!({})).await;
    rx.wait_for("/slow", 1).await;
    let store = app.engine.store().clone();
    app.stop().await;
    let message_id = herald_core::MessageId::parse(&id, "id").unwrap();
    let deliveries = store.message_deliveries(&message_id).await.unwrap();
    assert_eq!(
        deliveries[0].status,
        herald_core::delivery::DeliveryStatus::Succeeded
    );
}
