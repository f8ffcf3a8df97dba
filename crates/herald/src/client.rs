//! Subcommands that act on a running herald through its API (`send`,
//! `dead-letters list|replay`), so the running process schedules what they change.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::Config;

/// A client of the management API of the herald `config` describes (or `base`).
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(config: &Config, base: Option<String>) -> anyhow::Result<Self> {
        let base = match base {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => format!("http://{}", config.listen_addr()?),
        };
        Ok(Self {
            base,
            token: config.admin_token.as_ref().map(|t| t.expose().to_string()),
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach herald at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("herald answered {status}: {body}");
        }
        Ok(body)
    }

    /// Sends a test event to a tenant.
    pub async fn send(
        &self,
        tenant: &str,
        event_type: &str,
        payload: Value,
    ) -> anyhow::Result<Value> {
        let body = json!({"event_type": event_type, "payload": payload});
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{tenant}/messages"),
            Some(body),
        )
        .await
    }

    pub async fn dead_letters(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Value> {
        let query = endpoint
            .map(|e| format!("?endpoint_id={e}"))
            .unwrap_or_default();
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/tenants/{tenant}/dead-letters{query}"),
            None,
        )
        .await
    }

    pub async fn replay_one(&self, tenant: &str, id: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{tenant}/dead-letters/{id}/replay"),
            None,
        )
        .await
    }

    pub async fn replay_bulk(&self, tenant: &str, filter: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{tenant}/dead-letters/replay"),
            Some(filter),
        )
        .await
    }
}
