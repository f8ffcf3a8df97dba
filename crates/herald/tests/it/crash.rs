//! Durability: kill -9 of the real binary mid-delivery loses no acknowledged
//! message.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{eventually, free_port, post_ok, Process, Receiver, Reply};

herald_test! {
async fn kill_9_during_delivery_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let port = free_port();
    let rx = Receiver::start().await;
    rx.default_reply("/slow", Reply::status(200).delay(Duration::from_millis(50)));
    let http = reqwest::Client::new();

    let url = format!("sqlite://{}", db.display());
    let mut herald = Process::start_on(port, &url, &[], &[]).await;
    let base = herald.base();
    post_ok(&http, &format!("{base}/api/v1/tenants"), json!({"id": "acme"})).await;
    let endpoint = json!({"url": rx.url("/slow"), "max_in_flight": 2});
    post_ok(&http, &format!("{base}/api/v1/tenants/acme/endpoints"), endpoint).await;
    let mut acknowledged = HashSet::new();
    for n in 0..60 {
        let body = json!({"event_type": "a", "payload": {"n": n}});
        let message = post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), body).await;
        acknowledged.insert(message["id"].as_str().unwrap().to_string());
    }
    rx.wait_for("/slow", 5).await;
    herald.kill();
    let before = rx.requests("/slow").len();
    assert!(
        before < 60,
        "the kill came mid-delivery ({before} of 60 delivered)"
    );

    let _herald = Process::start_on(port, &url, &[], &[]).await;
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
}
