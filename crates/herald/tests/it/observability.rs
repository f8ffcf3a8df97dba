//! Metrics, monitoring routes, JSON logs and retention, checked against a known
//! mix of deliveries.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, free_port, post_ok, spawn_app, spawn_app_with, test_schema, Process, Receiver,
    Reply,
};

/// Three successes, two permanent failures, one retry then success.
async fn known_mix(app: &crate::helpers::TestApp, rx: &Receiver) -> Vec<String> {
    rx.default_reply("/gone", Reply::status(404));
    rx.script("/flaky", [Reply::status(503)]);
    app.tenant("acme").await;
    for kind in ["ok", "gone", "flaky"] {
        app.endpoint("acme", json!({"url": rx.url(&format!("/{kind}")), "event_types": [kind], "retry_policy": {"delays_seconds": [0.1]}}))
            .await;
    }
    let mut ids = Vec::new();
    for kind in ["ok", "ok", "ok", "gone", "gone", "flaky"] {
        ids.push((app.message("acme", kind, json!({"kind": kind})).await, kind));
    }
    for (id, kind) in &ids {
        app.settled(
            "acme",
            id,
            if *kind == "gone" {
                "failed"
            } else {
                "succeeded"
            },
        )
        .await;
    }
    ids.into_iter().map(|(id, _)| id).collect()
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{series} missing in\n{metrics}"))
}

herald_test! {
async fn metrics_stats_and_windows_count_a_known_mix_exactly() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    known_mix(&app, &rx).await;
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let target = format!("http://{}", rx.addr);
    for (series, expected) in [
        ("callback_total{status=\"success\"}", 4.0),
        ("callback_total{status=\"error\"}", 3.0),
        (&*format!("callback_duration_seconds_count{{target=\"{target}\"}}"), 7.0),
        ("herald_attempts_total{outcome=\"success\"}", 4.0),
        ("herald_attempts_total{outcome=\"retry\"}", 1.0),
        ("herald_attempts_total{outcome=\"failed\"}", 2.0),
        ("herald_dead_letters_total", 2.0),
        ("herald_messages_ingested_total{path=\"http\"}", 6.0),
        ("herald_messages_ingested_total{path=\"amqp_callback\"}", 0.0),
        ("hmac_errors_total", 0.0),
        ("amqp_reconnects_total", 0.0),
        ("herald_deliveries_pending", 0.0),
        ("herald_deliveries_in_flight", 0.0),
        ("herald_api_requests_total{method=\"POST\",route=\"/api/v1/tenants/{tid}/messages\",status=\"201\"}", 6.0),
    ] {
        assert_eq!(value(&metrics, series), expected, "{series}");
    }

    let (status, stats) = app.get("/api/v1/tenants/acme/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["tenant_id"], "acme");
    assert_eq!(stats["total_events"], 6);
    assert_eq!(stats["successful_events"], 4);
    assert_eq!(stats["failed_events"], 3);
    assert_eq!(stats["pending_retries"], 0);
    assert_eq!(stats["dead_letter_count"], 2);
    assert!(stats["avg_response_time_ms"].as_f64().unwrap() >= 0.0);
    assert!(stats["last_updated"].is_string());

    let (_, window) = app.get("/api/v1/webhook-metrics?hours=1").await;
    assert_eq!(window["attempts"], json!({"total": 7, "success": 4, "retry": 1, "failed": 2}));
    assert!((window["success_rate"].as_f64().unwrap() - 4.0 / 7.0).abs() < 1e-9);
    assert!(window["latency_ms"]["p99"].as_u64().unwrap() >= window["latency_ms"]["p50"].as_u64().unwrap());
    let (status, _) = app.get("/api/v1/webhook-metrics?hours=-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, failures) = app.get("/api/v1/webhook-failures").await;
    let failures = failures["data"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|f| f["tenant_id"] == "acme" && f["reason"].as_str().unwrap().contains("HTTP 404")));

    let (_, health) = app.get("/api/v1/webhook-health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "ok");
    assert_eq!(health["workers"], json!({"running": true, "pending": 0, "delivering": 0}));
    assert_eq!(health["lag_seconds"], 0.0);
}
}

herald_test! {
async fn every_log_line_is_json_with_context_and_no_secret_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let schema = test_schema().await;
    let url = match &schema {
        Some(s) => s.url(),
        None => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let log = dir.path().join("herald.log");
    let rx = Receiver::start().await;
    rx.default_reply("/fails", Reply::status(500));
    let herald = Process::start_logging(free_port(), &url, &[], &[("HERALD_LOG_LEVEL", "debug")], Some(&log)).await;
    let base = herald.base();
    let http = reqwest::Client::new();
    let secret = "obs-token-never-shown-4242";
    post_ok(&http, &format!("{base}/api/v1/tenants"), json!({"id": "acme"})).await;
    let ep = post_ok(&http, &format!("{base}/api/v1/tenants/acme/endpoints"), json!({"url": rx.url("/ok"), "event_types": ["ok"],
        "auth": {"type": "bearer", "token": secret}})).await;
    post_ok(&http, &format!("{base}/api/v1/tenants/acme/endpoints"), json!({"url": rx.url("/fails"), "event_types": ["bad"],
        "retry_policy": {"delays_seconds": [0.1]}})).await;
    post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), json!({"event_type": "ok", "payload": {"a": 1}})).await;
    post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), json!({"event_type": "bad", "payload": {"a": 2}})).await;
    rx.wait_for("/ok", 1).await;
    rx.wait_for("/fails", 2).await;
    eventually("both attempts of the failing delivery to be logged", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.matches("\"delivery attempt\"").count() >= 3).then_some(())
    })
    .await;
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let attempt_log = http.get(format!("{base}/api/v1/tenants/acme/attempts")).send().await.unwrap().text().await.unwrap();
    drop(herald);

    let text = std::fs::read_to_string(&log).unwrap();
    let mut tries = 0;
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message"] {
            assert!(entry.get(field).is_some(), "{field} missing: {line}");
        }
        if entry["message"] == "delivery attempt" {
            tries += 1;
            for field in ["tenant_id", "endpoint_id", "message_id", "delivery_id", "attempt", "status", "duration_ms", "outcome"] {
                assert!(entry.get(field).is_some(), "{field} missing: {line}");
            }
        }
    }
    assert!(tries >= 3, "{text}");
    assert!(text.contains(ep["id"].as_str().unwrap()));
    for (what, haystack) in [("logs", &text), ("metrics", &metrics), ("attempt logs", &attempt_log)] {
        assert!(!haystack.contains(secret), "the secret reached the {what}");
    }
    assert!(attempt_log.contains("[redacted]"));
}
}

herald_test! {
async fn the_janitor_removes_what_is_old_and_keeps_what_is_not() {
    let app = spawn_app_with(|c| {
        c.retention_seconds = 1.0;
        c.janitor_interval_seconds = 0.2;
    })
    .await;
    let rx = Receiver::start().await;
    rx.default_reply("/later", Reply::status(500));
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/ok"), "event_types": ["ok"]})).await;
    app.endpoint("acme", json!({"url": rx.url("/later"), "event_types": ["later"], "retry_policy": {"delays_seconds": [3600]}})).await;
    let old = app.message("acme", "ok", json!({})).await;
    let waiting = app.message("acme", "later", json!({})).await;
    app.settled("acme", &old, "succeeded").await;
    rx.wait_for("/later", 1).await;
    eventually("the finished message to age out", Duration::from_secs(15), || async {
        let (status, _) = app.get(&format!("/api/v1/tenants/acme/messages/{old}")).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let recent = app.message("acme", "ok", json!({})).await;
    let (status, message) = app.get(&format!("/api/v1/tenants/acme/messages/{waiting}")).await;
    assert_eq!(status, StatusCode::OK, "a message with a pending delivery stays, however old");
    assert_eq!(message["status"], "pending");
    let (status, _) = app.get(&format!("/api/v1/tenants/acme/messages/{recent}")).await;
    assert_eq!(status, StatusCode::OK, "a recent message stays");
}
}
