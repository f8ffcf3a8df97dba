//! The client subcommands against a running herald: `send` and
//! `dead-letters list|replay`.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Receiver, Reply};

async fn herald(args: Vec<String>) -> (bool, Value, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .env_clear()
            .output()
            .expect("the herald binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

herald_test! {
async fn send_list_and_replay_through_a_running_herald() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/cli", [Reply::status(410)]);
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/cli")})).await;

    let (ok, sent, stderr) = herald(args(&[
        "send",
        "--url",
        &app.base,
        "--tenant",
        "acme",
        "--event-type",
        "cli.test",
        "--payload",
        r#"{"x":1}"#,
    ]))
    .await;
    assert!(ok, "{stderr}");
    let id = sent["id"].as_str().unwrap().to_string();
    app.settled("acme", &id, "failed").await;
    assert_eq!(rx.requests("/cli")[0].json(), json!({"x": 1}));

    let (ok, listed, stderr) = herald(args(&[
        "dead-letters",
        "list",
        "--url",
        &app.base,
        "--tenant",
        "acme",
    ]))
    .await;
    assert!(ok, "{stderr}");
    let dead = listed["data"][0]["id"].as_str().unwrap().to_string();
    let (ok, replayed, stderr) = herald(args(&[
        "dead-letters",
        "replay",
        "--url",
        &app.base,
        "--tenant",
        "acme",
        "--id",
        &dead,
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(replayed["status"], "pending");
    app.settled("acme", &id, "succeeded").await;

    let (ok, _, stderr) = herald(args(&["send", "--url", &app.base, "--tenant", "nobody"])).await;
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
}
}
