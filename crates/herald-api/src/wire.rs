//! What the API answers: the resources as SPEC §9 names them. Write-only fields
//! (secrets, passwords, tokens) have no place in these types, so they cannot leak.

use chrono::SecondsFormat;
use herald_core::delivery::{message_status, DeliveryStatus};
use herald_core::endpoint::{DeliveryMode, Endpoint, OnExhausted};
use herald_core::signing::SignatureScheme;
use herald_store::{
    from_millis, Attempt, DeadLetter, Delivery, Millis, Page, StoredMessage, Tenant,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;

/// A payload as the store keeps it (compact JSON), answered as it is: no parse
/// into a tree and back.
fn stored_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

pub fn time(ms: Millis) -> String {
    from_millis(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A page of a list: newest first, `next_cursor` fetches the next page.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn from_page<S>(page: Page<S>, f: impl Fn(S) -> T) -> Self {
        Self {
            data: page.data.into_iter().map(f).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TenantOut {
    pub id: String,
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name,
            retry_policy: t
                .retry_policy
                .map(|p| serde_json::to_value(p).unwrap_or_default()),
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SignatureOut {
    pub scheme: SignatureScheme,
    pub header: String,
    pub timestamp_header: String,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointOut {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub method: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub signature: SignatureOut,
    pub headers: std::collections::BTreeMap<String, String>,
    /// The auth type and non-secret fields only.
    #[schema(value_type = Object)]
    pub auth: Value,
    pub connect_timeout_seconds: f64,
    pub timeout_seconds: f64,
    /// `null`: the tenant's or the global default.
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<Value>,
    pub on_exhausted: OnExhausted,
    pub mode: DeliveryMode,
    pub max_in_flight: u32,
    pub rate_limit_per_second: Option<f64>,
    pub user_agent: String,
    /// The body template, when the endpoint has one.
    pub template: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl EndpointOut {
    pub fn new(e: &Endpoint, default_user_agent: &str) -> Self {
        Self {
            id: e.id.to_string(),
            tenant_id: e.tenant_id.to_string(),
            url: e.url.clone(),
            method: e.method.clone(),
            description: e.description.clone(),
            event_types: e
                .event_types
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            active: e.active,
            disabled_reason: e.disabled_reason.clone(),
            signature: SignatureOut {
                scheme: e.signature.scheme,
                header: e.signature.header.clone(),
                timestamp_header: e.signature.timestamp_header.clone(),
            },
            headers: e.headers.clone(),
            auth: e.auth.masked(),
            connect_timeout_seconds: e.connect_timeout_seconds,
            timeout_seconds: e.timeout_seconds,
            retry_policy: e
                .retry_policy
                .as_ref()
                .map(|p| serde_json::to_value(p).unwrap_or_default()),
            on_exhausted: e.on_exhausted,
            mode: e.mode,
            max_in_flight: e.max_in_flight,
            rate_limit_per_second: e.rate_limit_per_second,
            user_agent: e
                .user_agent
                .clone()
                .unwrap_or_else(|| default_user_agent.to_string()),
            template: e.template.clone(),
            created_at: e.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            updated_at: e.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    /// `null` for an ad-hoc callback.
    pub endpoint_id: Option<String>,
    /// The target of an ad-hoc callback.
    pub url: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&Delivery> for DeliveryOut {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            endpoint_id: d.endpoint_id.as_ref().map(|e| e.to_string()),
            url: d.adhoc_url().map(str::to_string),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.filter(|_| d.status.is_open()).map(time),
            last_error: d.last_error.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub headers: std::collections::BTreeMap<String, String>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    pub idempotency_key: Option<String>,
    pub created_at: String,
    /// `pending` while any delivery is open, `succeeded` when all succeeded, else `failed`.
    pub status: &'static str,
    pub deliveries: Vec<DeliveryOut>,
}

impl MessageOut {
    pub fn new(m: StoredMessage, deliveries: &[Delivery]) -> Self {
        Self {
            id: m.id.to_string(),
            tenant_id: m.tenant_id.to_string(),
            event_type: m.event_type,
            payload: stored_json(m.payload),
            headers: m.headers,
            context: m.context,
            idempotency_key: m.idempotency_key,
            created_at: time(m.created_at),
            status: message_status(deliveries.iter().map(|d| d.status)),
            deliveries: deliveries.iter().map(DeliveryOut::from).collect(),
        }
    }
}

/// A message in a list, without its deliveries.
#[derive(Serialize, ToSchema)]
pub struct MessageSummary {
    pub id: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub idempotency_key: Option<String>,
    pub created_at: String,
}

impl From<StoredMessage> for MessageSummary {
    fn from(m: StoredMessage) -> Self {
        Self {
            id: m.id.to_string(),
            event_type: m.event_type,
            payload: stored_json(m.payload),
            idempotency_key: m.idempotency_key,
            created_at: time(m.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub delivery_id: String,
    pub message_id: String,
    pub endpoint_id: Option<String>,
    /// 1 for the first try.
    pub attempt: u32,
    pub method: String,
    pub url: String,
    /// Secrets redacted.
    pub request_headers: Vec<(String, String)>,
    /// At most the first 4 KiB of the body sent.
    pub request_body: Option<String>,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    /// At most the first 4 KiB.
    pub response_body: Option<String>,
    pub duration_ms: u64,
    /// `success`, `retry` or `failed`.
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            delivery_id: a.delivery_id.to_string(),
            message_id: a.message_id.to_string(),
            endpoint_id: a.endpoint_id.map(|e| e.to_string()),
            attempt: a.attempt,
            method: a.method,
            url: a.url,
            request_headers: a.request_headers,
            request_body: a.request_body,
            response_status: a.response_status,
            response_headers: a.response_headers,
            response_body: a.response_body,
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            error_kind: a.error_kind,
            error: a.error,
            created_at: time(a.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterOut {
    /// The delivery id.
    pub id: String,
    pub message_id: String,
    pub endpoint_id: Option<String>,
    pub url: String,
    pub event_type: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub dead_at: Option<String>,
    pub replayable: bool,
}

impl From<DeadLetter> for DeadLetterOut {
    fn from(d: DeadLetter) -> Self {
        Self {
            id: d.delivery.id.to_string(),
            message_id: d.delivery.message_id.to_string(),
            endpoint_id: d.delivery.endpoint_id.map(|e| e.to_string()),
            url: d.url,
            event_type: d.event_type,
            reason: d.delivery.dead_reason,
            attempts: d.delivery.attempts,
            dead_at: d.delivery.dead_at.map(time),
            replayable: d.replayable,
        }
    }
}
