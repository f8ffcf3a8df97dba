//! PostgreSQL stopped and started again under load: ingest answers 503 while the
//! database is away (never a false 2xx), `/readyz` turns not-ready, and once the
//! database is back delivery resumes by itself with no acknowledged message lost.
//!
//! A test binary of its own: stopping the database would disturb any other
//! PostgreSQL test running beside it, and cargo runs test binaries one at a time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

/// The store these tests run on.
const BACKEND: helpers::Backend = helpers::Backend::Postgres;

#[path = "../it/helpers.rs"]
mod helpers;

use helpers::{eventually, post_ok, test_schema, Process, Receiver};

fn cluster_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .expect("a PostgreSQL cluster in /etc/postgresql");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action}");
}

/// Starts the database again even when the test fails halfway.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .args(["-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_pg),
    ignore = "set HERALD_TEST_DATABASE_URL to run the PostgreSQL tests"
)]
async fn postgres_restarted_under_load_loses_no_acknowledged_message() {
    let schema = test_schema().await.unwrap();
    let rx = Receiver::start().await;
    let herald = Process::start(&schema.url(), &[], &[("HERALD_DATABASE_POOL_SIZE", "4")]).await;
    let base = herald.base();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    post_ok(
        &http,
        &format!("{base}/api/v1/tenants"),
        json!({"id": "acme"}),
    )
    .await;
    post_ok(
        &http,
        &format!("{base}/api/v1/tenants/acme/endpoints"),
        json!({"url": rx.url("/r")}),
    )
    .await;

    // A producer that retries each message (same idempotency key) until it is
    // acknowledged, recording every status it saw.
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let statuses = Arc::new(Mutex::new(HashSet::new()));
    let producer = {
        let (http, base, acknowledged, statuses) = (
            http.clone(),
            base.clone(),
            acknowledged.clone(),
            statuses.clone(),
        );
        tokio::spawn(async move {
            for n in 0..400 {
                let body = json!({"event_type": "r", "payload": {"n": n}, "idempotency_key": format!("n-{n}")});
                loop {
                    match http
                        .post(format!("{base}/api/v1/tenants/acme/messages"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            statuses.lock().unwrap().insert(status);
                            if status == 201 || status == 200 {
                                let v: serde_json::Value = r.json().await.unwrap();
                                acknowledged
                                    .lock()
                                    .unwrap()
                                    .insert(v["id"].as_str().unwrap().to_string());
                                break;
                            }
                            assert_eq!(status, 503, "only 503 while the database is away");
                        }
                        Err(e) => panic!("herald stopped answering: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually(
        "some messages to be acknowledged",
        Duration::from_secs(30),
        || async { (acknowledged.lock().unwrap().len() >= 80).then_some(()) },
    )
    .await;

    let _guard = RestartGuard;
    tokio::task::spawn_blocking(|| cluster_ctl("stop"))
        .await
        .unwrap();
    eventually(
        "/readyz to turn not-ready",
        Duration::from_secs(20),
        || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status().as_u16() == 503).then_some(())
        },
    )
    .await;
    eventually(
        "an ingest to be refused with 503",
        Duration::from_secs(20),
        || async { statuses.lock().unwrap().contains(&503).then_some(()) },
    )
    .await;
    tokio::task::spawn_blocking(|| cluster_ctl("start"))
        .await
        .unwrap();
    eventually(
        "/readyz to be ready again",
        Duration::from_secs(60),
        || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    producer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 400);
    eventually(
        "every acknowledged message to arrive",
        Duration::from_secs(120),
        || async {
            let seen: HashSet<String> = rx
                .requests("/r")
                .iter()
                .filter_map(|r| r.header("x-event-id").map(String::from))
                .collect();
            acknowledged.is_subset(&seen).then_some(())
        },
    )
    .await;
}
