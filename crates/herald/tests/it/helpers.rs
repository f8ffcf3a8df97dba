//! Test harness: an in-process herald on port 0 with its own SQLite file, a real
//! HTTP receiver on 127.0.0.1 that can be told how to answer, and waiting on
//! conditions with a deadline (never a bare sleep).
//!
//! Shared by the SQLite, PostgreSQL and restart test binaries; each uses a part.
#![allow(dead_code)]

#[path = "helpers/broker.rs"]
mod broker;
#[path = "helpers/receiver.rs"]
mod receiver;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use broker::Broker;
#[allow(unused_imports)]
pub use receiver::{Receiver, Recorded, Reply};

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald::{App, Config};
use herald_store::postgres::test_schema::TestSchema;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Polls `check` every 20 ms until it yields a value or `deadline` passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        herald::telemetry::init("info", "pretty");
    }
}

/// The master key every test herald uses (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLWxvbmc=";

/// Which store a test binary runs herald on.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The test database, when the backend is PostgreSQL: a schema of its own.
pub async fn test_schema() -> Option<TestSchema> {
    test_schema_for(crate::BACKEND).await
}

/// A schema of its own in the test database, for `backend` PostgreSQL.
pub async fn test_schema_for(backend: Backend) -> Option<TestSchema> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let url = std::env::var("HERALD_TEST_DATABASE_URL")
                .expect("HERALD_TEST_DATABASE_URL names the test database");
            Some(TestSchema::create(&url).await)
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    pub engine: herald_engine::Engine,
    /// Holds the database directory (or schema) until the app is dropped.
    pub _dir: tempfile::TempDir,
    pub _schema: Option<TestSchema>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A config for tests: loopback, port 0, a database in `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = format!("sqlite://{}", dir.join("herald.db").display());
    config.shutdown_grace_seconds = 5.0;
    // The receivers live on loopback, which the SSRF guard refuses by default.
    config.allow_networks = vec!["127.0.0.0/8".into()];
    config
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().expect("a temp dir");
    let schema = test_schema().await;
    let mut config = test_config(dir.path());
    if let Some(schema) = &schema {
        config.database_url = schema.url();
        config.database_pool_size = 8;
        config.master_key =
            Some(serde_json::from_value(Value::String(TEST_MASTER_KEY.into())).unwrap());
    }
    adjust(&mut config);
    start(config, dir, schema).await
}

pub async fn start(config: Config, dir: tempfile::TempDir, schema: Option<TestSchema>) -> TestApp {
    let app = App::build(&config).await.expect("herald builds");
    let base = format!("http://{}", app.local_addr());
    let engine = app.engine().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        http: reqwest::Client::new(),
        token: config.admin_token.as_ref().map(|t| t.expose().to_string()),
        engine,
        _dir: dir,
        _schema: schema,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("herald answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a tenant with a chosen id.
    pub async fn tenant(&self, id: &str) {
        let (status, body) = self.post("/api/v1/tenants", json!({"id": id})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Creates an endpoint and returns its id.
    pub async fn endpoint(&self, tenant: &str, spec: Value) -> String {
        let (status, body) = self
            .post(&format!("/api/v1/tenants/{tenant}/endpoints"), spec)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Sends a message and returns its id.
    pub async fn message(&self, tenant: &str, event_type: &str, payload: Value) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/tenants/{tenant}/messages"),
                json!({"event_type": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Waits until the message's status summary is `status`, and returns the message.
    pub async fn settled(&self, tenant: &str, message: &str, status: &str) -> Value {
        let path = format!("/api/v1/tenants/{tenant}/messages/{message}");
        eventually(
            &format!("message {message} to be {status}"),
            Duration::from_secs(20),
            || async {
                let (_, body) = self.get(&path).await;
                (body["status"] == status).then_some(body)
            },
        )
        .await
    }

    /// Stops herald as SIGTERM would, and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("herald task")
                .expect("herald stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The herald binary, running; killed (as kill -9 does) when dropped.
pub struct Process {
    child: std::process::Child,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    /// Starts `herald serve` on a free port with `database_url` and `env`, and waits
    /// until it is ready.
    pub async fn start(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), database_url, args, env).await
    }

    pub async fn start_on(
        port: u16,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_logging(port, database_url, args, env, None).await
    }

    /// Like [`start_on`](Self::start_on), writing herald's log lines to `log`.
    pub async fn start_logging(
        port: u16,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .args(args)
            .env_clear()
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_LOG_LEVEL", "warn")
            .env("HERALD_MASTER_KEY", TEST_MASTER_KEY)
            .env("HERALD_ALLOW_NETWORKS", "127.0.0.0/8")
            .stdout(match log {
                Some(path) => {
                    std::process::Stdio::from(std::fs::File::create(path).expect("a log file"))
                }
                None => std::process::Stdio::null(),
            });
        for (k, v) in env {
            command.env(k, v);
        }
        let process = Self {
            child: command.spawn().expect("the herald binary starts"),
            port,
        };
        let http = reqwest::Client::new();
        eventually("herald to be ready", Duration::from_secs(30), || async {
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

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs JSON and returns the answer's body; panics unless it is a success.
pub async fn post_ok(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = http.post(url).json(&body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
