//! What one request sends: the plan resolved from the endpoint or the ad-hoc
//! target, the body (payload or filled template) and the headers.

use herald_core::endpoint::{Endpoint, OnExhausted};
use herald_core::signing::SignatureConfig;
use herald_store::StoredMessage;

use crate::EngineConfig;

/// Everything one request needs, resolved from the endpoint or the ad-hoc target.
pub(super) struct Plan<'a> {
    pub(super) template: Option<&'a str>,
    pub(super) url: &'a str,
    pub(super) method: &'a str,
    pub(super) signature: &'a SignatureConfig,
    pub(super) extra_headers: Vec<(&'a String, &'a String)>,
    pub(super) auth: Option<(String, String)>,
    pub(super) user_agent: &'a str,
    pub(super) connect_timeout: f64,
    pub(super) timeout: f64,
    pub(super) on_exhausted: OnExhausted,
}

pub(super) fn plan<'a>(
    config: &'a EngineConfig,
    target: Option<&'a herald_core::delivery::AdHocTarget>,
    endpoint: Option<&'a Endpoint>,
) -> Option<Plan<'a>> {
    if let Some(e) = endpoint {
        return Some(Plan {
            template: e.template.as_deref(),
            url: &e.url,
            method: &e.method,
            signature: &e.signature,
            extra_headers: e.headers.iter().collect(),
            auth: e.auth.header(),
            user_agent: e.user_agent.as_deref().unwrap_or(&config.user_agent),
            connect_timeout: e.connect_timeout_seconds,
            timeout: e.timeout_seconds,
            on_exhausted: e.on_exhausted,
        });
    }
    let target = target?;
    Some(Plan {
        template: None,
        url: &target.url,
        method: &target.method,
        signature: &target.signature,
        extra_headers: target.headers.iter().collect(),
        auth: target.auth.header(),
        user_agent: target.user_agent.as_deref().unwrap_or(&config.user_agent),
        connect_timeout: config
            .adhoc_connect_timeout_seconds
            .min(target.timeout_seconds.unwrap_or(f64::MAX)),
        timeout: config.adhoc_timeout(target),
        on_exhausted: OnExhausted::DeadLetter,
    })
}

/// The bytes to send: the payload as stored (compact, sorted keys), or the
/// endpoint's template filled in. A template that cannot be filled fails the
/// delivery for good, with its reason.
pub(super) fn body(
    plan: &Plan<'_>,
    message: &StoredMessage,
    timestamp: i64,
) -> Result<bytes::Bytes, (&'static str, String)> {
    let Some(source) = plan.template else {
        return Ok(bytes::Bytes::from(message.payload.clone().into_bytes()));
    };
    let fail = |e: String| ("template", format!("template render failed: {e}"));
    let template =
        herald_core::template::Template::parse(source, "template").map_err(|e| fail(e.message))?;
    let payload: serde_json::Value =
        serde_json::from_str(&message.payload).map_err(|e| fail(e.to_string()))?;
    let rendered = template
        .render(&herald_core::template::RenderContext {
            message_id: message.id.as_str(),
            event_type: &message.event_type,
            tenant_id: message.tenant_id.as_str(),
            timestamp,
            payload: &payload,
        })
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes::Bytes::from(rendered.into_bytes()))
}

/// Endpoint and message headers first, herald's own after them so they win.
pub(super) fn request_headers(
    plan: &Plan<'_>,
    message: &StoredMessage,
    timestamp: i64,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = plan
        .extra_headers
        .iter()
        .map(|(n, v)| ((*n).clone(), (*v).clone()))
        .chain(message.headers.iter().map(|(n, v)| (n.clone(), v.clone())))
        .collect();
    let own = [
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", plan.user_agent.to_string()),
        ("X-Event-ID", message.id.to_string()),
        ("X-Event-Type", message.event_type.clone()),
        ("X-Tenant-ID", message.tenant_id.to_string()),
        ("X-Timestamp", timestamp.to_string()),
    ];
    for (name, value) in own {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_string(), value));
    }
    headers
}
