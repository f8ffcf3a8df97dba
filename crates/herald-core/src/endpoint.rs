//! Endpoints: a subscriber URL and every option of how to deliver to it (SPEC §1, §9).
//! [`EndpointSpec`] is what a caller writes (create and patch alike); [`Endpoint`] is
//! the validated resource the store keeps and the engine reads.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::filter::{parse_patterns, EventPattern};
use crate::headers::{validate_header, validate_headers};
use crate::retry::{RetryPolicy, RetryPolicySpec, MIN_SECONDS};
use crate::signing::{SignatureConfig, SignatureScheme};
use crate::{EndpointId, TenantId, ValidationError};

/// What happens when a delivery's retries are spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// The delivery becomes a dead letter.
    #[default]
    DeadLetter,
    /// Seed 002's rule: disable the endpoint and dead-letter its queued deliveries.
    DisableEndpoint,
}

/// How deliveries to one endpoint are paced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// In parallel, up to `max_in_flight`.
    #[default]
    Concurrent,
    /// One at a time in message order; later messages wait while the head retries.
    Ordered,
}

/// How herald authenticates to the target (SPEC §4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetAuth {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    ApiKey {
        header_name: String,
        key: String,
    },
}

impl TargetAuth {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            TargetAuth::None => Ok(()),
            TargetAuth::Basic { username, password } => {
                if username.is_empty() || username.contains(':') {
                    return Err(ValidationError::new(
                        "auth.username",
                        "must be non-empty and contain no `:`",
                    ));
                }
                validate_header("Authorization", password, "auth")
                    .map_err(|_| ValidationError::new("auth.password", "must not contain CR or LF"))
            }
            TargetAuth::Bearer { token } => {
                if token.is_empty() {
                    return Err(ValidationError::new("auth.token", "must not be empty"));
                }
                validate_header("Authorization", token, "auth")
                    .map_err(|_| ValidationError::new("auth.token", "must not contain CR or LF"))
            }
            TargetAuth::ApiKey { header_name, key } => {
                validate_header(header_name, "", "auth").map_err(|_| {
                    ValidationError::new("auth.header_name", "must be an HTTP header name")
                })?;
                if key.is_empty() {
                    return Err(ValidationError::new("auth.key", "must not be empty"));
                }
                validate_header(header_name, key, "auth")
                    .map_err(|_| ValidationError::new("auth.key", "must not contain CR or LF"))
            }
        }
    }

    /// The header that carries the credentials, if any.
    pub fn header(&self) -> Option<(String, String)> {
        match self {
            TargetAuth::None => None,
            TargetAuth::Basic { username, password } => Some((
                "Authorization".into(),
                format!("Basic {}", B64.encode(format!("{username}:{password}"))),
            )),
            TargetAuth::Bearer { token } => {
                Some(("Authorization".into(), format!("Bearer {token}")))
            }
            TargetAuth::ApiKey { header_name, key } => Some((header_name.clone(), key.clone())),
        }
    }

    /// The auth with its secrets removed, for API answers.
    pub fn masked(&self) -> serde_json::Value {
        match self {
            TargetAuth::None => serde_json::json!({"type": "none"}),
            TargetAuth::Basic { username, .. } => {
                serde_json::json!({"type": "basic", "username": username})
            }
            TargetAuth::Bearer { .. } => serde_json::json!({"type": "bearer"}),
            TargetAuth::ApiKey { header_name, .. } => {
                serde_json::json!({"type": "api_key", "header_name": header_name})
            }
        }
    }
}

/// Defaults that come from configuration, applied to fields a caller leaves out.
#[derive(Clone, Debug)]
pub struct EndpointDefaults {
    pub connect_timeout_seconds: f64,
    pub timeout_seconds: f64,
    pub max_in_flight: u32,
}

impl Default for EndpointDefaults {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 10.0,
            timeout_seconds: 30.0,
            max_in_flight: 10,
        }
    }
}

/// The endpoint as the store keeps it: validated, secrets included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    pub method: String,
    pub description: String,
    pub event_types: Vec<EventPattern>,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub signature: SignatureConfig,
    pub headers: BTreeMap<String, String>,
    pub auth: TargetAuth,
    pub connect_timeout_seconds: f64,
    pub timeout_seconds: f64,
    /// `None`: the configured global default.
    pub retry_policy: Option<RetryPolicy>,
    pub on_exhausted: OnExhausted,
    pub mode: DeliveryMode,
    pub max_in_flight: u32,
    pub rate_limit_per_second: Option<f64>,
    /// `None`: herald's own `herald/<version>`.
    pub user_agent: Option<String>,
    /// A body template (checked when saved); `None`: the payload as is.
    #[serde(default)]
    pub template: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The signature block a caller writes.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    pub scheme: Option<SignatureScheme>,
    pub header: Option<String>,
    pub timestamp_header: Option<String>,
    /// Write-only; generated when absent.
    pub secret: Option<String>,
}

/// An endpoint as a caller writes it, for create (`url` required) and patch (every
/// field optional; `null` clears the nullable ones).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub url: Option<String>,
    pub method: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub active: Option<bool>,
    pub signature: Option<SignatureSpec>,
    pub headers: Option<BTreeMap<String, String>>,
    pub auth: Option<TargetAuth>,
    pub connect_timeout_seconds: Option<f64>,
    pub timeout_seconds: Option<f64>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<RetryPolicySpec>)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
    pub on_exhausted: Option<OnExhausted>,
    pub mode: Option<DeliveryMode>,
    pub max_in_flight: Option<u32>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<f64>)]
    pub rate_limit_per_second: Option<Option<f64>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub user_agent: Option<Option<String>>,
    /// JSON text with `{{...}}` placeholders (SPEC §5); `null` removes it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub template: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn some<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A target URL: absolute http(s) with a host and no credentials, at most 2048 bytes.
pub fn validate_url(url: &str, field: &str) -> Result<(), ValidationError> {
    if url.len() > 2048 {
        return Err(ValidationError::new(field, "must be at most 2048 bytes"));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| ValidationError::new(field, format!("is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ValidationError::new(field, "must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ValidationError::new(field, "must name a host"));
    }
    // The URL is shown in answers and attempt logs; a password in it would be too.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ValidationError::new(
            field,
            "must not carry credentials (user:password@); give them as auth or an Authorization header",
        ));
    }
    Ok(())
}

/// An HTTP method herald may send with: GET, POST, PUT, PATCH or DELETE.
pub fn parse_method(method: &str, field: &str) -> Result<String, ValidationError> {
    let upper = method.to_ascii_uppercase();
    if matches!(upper.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        Ok(upper)
    } else {
        Err(ValidationError::new(
            field,
            "must be GET, POST, PUT, PATCH or DELETE",
        ))
    }
}

fn timeout(value: f64, field: &str) -> Result<f64, ValidationError> {
    if !(MIN_SECONDS..=300.0).contains(&value) {
        return Err(ValidationError::new(
            field,
            format!("must be between {MIN_SECONDS} and 300 seconds"),
        ));
    }
    Ok(value)
}

impl Endpoint {
    /// A new endpoint from a caller's spec.
    pub fn create(
        tenant_id: TenantId,
        spec: EndpointSpec,
        defaults: &EndpointDefaults,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let url = spec
            .url
            .clone()
            .ok_or_else(|| ValidationError::new("url", "is required"))?;
        let signature = spec.signature.clone().unwrap_or_default();
        let mut endpoint = Endpoint {
            id: EndpointId::new(),
            tenant_id,
            url,
            method: "POST".into(),
            description: String::new(),
            event_types: parse_patterns(None, "event_types")?,
            active: true,
            disabled_reason: None,
            signature: SignatureConfig::new(
                signature
                    .scheme
                    .unwrap_or(SignatureScheme::StandardWebhooks),
                signature.header,
                signature.timestamp_header,
                signature.secret,
            )?,
            headers: BTreeMap::new(),
            auth: TargetAuth::None,
            connect_timeout_seconds: defaults.connect_timeout_seconds,
            timeout_seconds: defaults.timeout_seconds,
            retry_policy: None,
            on_exhausted: OnExhausted::default(),
            mode: DeliveryMode::default(),
            max_in_flight: defaults.max_in_flight,
            rate_limit_per_second: None,
            user_agent: None,
            template: None,
            created_at: now,
            updated_at: now,
        };
        endpoint.apply(
            EndpointSpec {
                signature: None,
                ..spec
            },
            now,
        )?;
        Ok(endpoint)
    }

    /// Applies a caller's changes; on error nothing is changed.
    pub fn apply(&mut self, spec: EndpointSpec, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let mut next = self.clone();
        if let Some(url) = spec.url {
            validate_url(&url, "url")?;
            next.url = url;
        }
        if let Some(method) = spec.method {
            next.method = parse_method(&method, "method")?;
        }
        if let Some(description) = spec.description {
            if description.len() > 1024 {
                return Err(ValidationError::new(
                    "description",
                    "must be at most 1024 bytes",
                ));
            }
            next.description = description;
        }
        if let Some(types) = spec.event_types {
            next.event_types = parse_patterns(Some(&types), "event_types")?;
        }
        if let Some(active) = spec.active {
            next.active = active;
            if active {
                next.disabled_reason = None;
            } else if next.disabled_reason.is_none() {
                next.disabled_reason = Some("disabled by the API".into());
            }
        }
        if let Some(signature) = spec.signature {
            let scheme = signature.scheme.unwrap_or(next.signature.scheme);
            let secret = match (signature.secret, scheme == next.signature.scheme) {
                (Some(secret), _) => Some(secret),
                (None, true) => next.signature.keys.first().map(|k| k.secret.clone()),
                (None, false) => None,
            };
            next.signature = SignatureConfig::new(
                scheme,
                signature.header.or_else(|| {
                    (scheme == next.signature.scheme).then(|| next.signature.header.clone())
                }),
                signature
                    .timestamp_header
                    .or_else(|| Some(next.signature.timestamp_header.clone())),
                secret,
            )?;
        }
        if let Some(headers) = spec.headers {
            validate_headers(&headers, "headers")?;
            next.headers = headers;
        }
        if let Some(auth) = spec.auth {
            auth.validate()?;
            next.auth = auth;
        }
        let connect_given = spec.connect_timeout_seconds.is_some();
        if let Some(t) = spec.connect_timeout_seconds {
            next.connect_timeout_seconds = timeout(t, "connect_timeout_seconds")?;
        }
        if let Some(t) = spec.timeout_seconds {
            next.timeout_seconds = timeout(t, "timeout_seconds")?;
        }
        if let Some(policy) = spec.retry_policy {
            next.retry_policy = policy
                .map(|p| p.parse().map_err(|e| e.within("retry_policy")))
                .transpose()?;
        }
        if let Some(rule) = spec.on_exhausted {
            next.on_exhausted = rule;
        }
        if let Some(mode) = spec.mode {
            next.mode = mode;
        }
        if let Some(n) = spec.max_in_flight {
            if !(1..=1000).contains(&n) {
                return Err(ValidationError::new(
                    "max_in_flight",
                    "must be between 1 and 1000",
                ));
            }
            next.max_in_flight = n;
        }
        if let Some(rate) = spec.rate_limit_per_second {
            if let Some(r) = rate {
                if !(0.01..=100_000.0).contains(&r) {
                    return Err(ValidationError::new(
                        "rate_limit_per_second",
                        "must be between 0.01 and 100000",
                    ));
                }
            }
            next.rate_limit_per_second = rate;
        }
        if let Some(agent) = spec.user_agent {
            if let Some(a) = &agent {
                validate_header("User-Agent", a, "user_agent")
                    .map_err(|_| ValidationError::new("user_agent", "must not contain CR or LF"))?;
            }
            next.user_agent = agent;
        }
        if let Some(template) = spec.template {
            if let Some(t) = &template {
                crate::template::Template::parse(t, "template")?;
            }
            next.template = template;
        }
        if next.connect_timeout_seconds > next.timeout_seconds && !connect_given {
            // Only the total timeout was given: the connect timeout follows it down.
            next.connect_timeout_seconds = next.timeout_seconds;
        }
        if next.connect_timeout_seconds > next.timeout_seconds {
            return Err(ValidationError::new(
                "connect_timeout_seconds",
                "must not exceed timeout_seconds",
            ));
        }
        next.updated_at = now;
        *self = next;
        Ok(())
    }

    /// Deliveries to this endpoint that may be in flight at once.
    pub fn concurrency(&self) -> u32 {
        match self.mode {
            DeliveryMode::Ordered => 1,
            DeliveryMode::Concurrent => self.max_in_flight,
        }
    }
}

#[cfg(test)]
mod tests;
