//! Records the cases build.

use std::sync::Arc;

use herald_core::delivery::AdHocTarget;
use herald_core::endpoint::{Endpoint, EndpointDefaults, EndpointSpec};
use herald_core::signing::{SignatureConfig, SignatureScheme};
use herald_core::{AttemptId, EndpointId, MessageId, TenantId};
use herald_store::prelude::*;
use herald_store::*;

pub fn tenant_id(name: &str) -> TenantId {
    TenantId::parse(name, "id").unwrap()
}

pub async fn tenant(store: &Arc<dyn Store>, name: &str) -> TenantId {
    let id = tenant_id(name);
    store
        .create_tenant(Tenant {
            id: id.clone(),
            name: name.into(),
            retry_policy: None,
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    id
}

pub async fn endpoint(store: &Arc<dyn Store>, tenant: &TenantId, ordered: bool) -> Endpoint {
    let spec: EndpointSpec = serde_json::from_value(serde_json::json!({
        "url": "http://127.0.0.1:9/hook",
        "mode": if ordered { "ordered" } else { "concurrent" },
    }))
    .unwrap();
    let endpoint = Endpoint::create(
        tenant.clone(),
        spec,
        &EndpointDefaults::default(),
        chrono::Utc::now(),
    )
    .unwrap();
    store.create_endpoint(endpoint.clone()).await.unwrap();
    endpoint
}

pub fn message(tenant: &TenantId, key: Option<&str>, at: Millis) -> StoredMessage {
    StoredMessage {
        id: MessageId::new(),
        tenant_id: tenant.clone(),
        event_type: "user.created".into(),
        payload: r#"{"a":1}"#.into(),
        headers: [("X-Trace".to_string(), "t1".to_string())].into(),
        context: Some(serde_json::json!({"source": "test"})),
        idempotency_key: key.map(String::from),
        created_at: at,
    }
}

pub fn adhoc() -> AdHocTarget {
    AdHocTarget {
        url: "http://127.0.0.1:9/cb".into(),
        method: "POST".into(),
        signature: SignatureConfig::new(
            SignatureScheme::HmacSha256Hex,
            None,
            None,
            Some("secret-key".into()),
        )
        .unwrap(),
        headers: Default::default(),
        retry_policy: None,
        auth: Default::default(),
        timeout_seconds: None,
        user_agent: None,
    }
}

/// A message with one delivery to `endpoint` (or ad hoc).
pub fn ingest(tenant: &TenantId, endpoint: Option<&EndpointId>, key: Option<&str>) -> Ingest {
    let m = message(tenant, key, 1_000);
    let target = endpoint.is_none().then(adhoc);
    let d = Delivery::new(&m, endpoint.cloned(), target, 1_000);
    Ingest {
        message: m,
        deliveries: vec![d],
        ordered: endpoint.is_some(),
    }
}

/// Ingests and returns the committed delivery.
pub async fn delivery(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    endpoint: Option<&EndpointId>,
    owner: Option<&NodeId>,
) -> Delivery {
    match store
        .ingest(ingest(tenant, endpoint, None), owner)
        .await
        .unwrap()
    {
        IngestResult::Created(mut d) => d.remove(0),
        IngestResult::Duplicate(_) => panic!("no key was given"),
    }
}

pub fn attempt(d: &Delivery, number: u32, outcome: &str, at: Millis) -> Attempt {
    Attempt {
        id: AttemptId::new(),
        delivery_id: d.id.clone(),
        message_id: d.message_id.clone(),
        tenant_id: d.tenant_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        attempt: number,
        method: "POST".into(),
        url: "http://127.0.0.1:9/hook".into(),
        request_headers: vec![("X-Event-ID".into(), d.message_id.to_string())],
        response_status: Some(if outcome == "success" { 200 } else { 500 }),
        response_headers: vec![("content-type".into(), "text/plain".into())],
        response_body: Some("ok".into()),
        duration_ms: 5,
        outcome: outcome.into(),
        error_kind: None,
        error: None,
        created_at: at,
        request_body: Some(r#"{"a":1}"#.into()),
        request_body_is_payload: false,
    }
}

pub fn outcome(d: &Delivery, number: u32, next: NextState, at: Millis) -> Outcome {
    let kind = match &next {
        NextState::Succeeded => "success",
        NextState::Retry { .. } => "retry",
        _ => "failed",
    };
    Outcome {
        attempt: attempt(d, number, kind, at),
        next,
        now: at,
    }
}

/// Claims `d` for `node` and records `next` for its try number `number`.
pub async fn try_once(
    store: &Arc<dyn Store>,
    d: &Delivery,
    node: &NodeId,
    number: u32,
    next: NextState,
) -> OutcomeApplied {
    assert!(matches!(
        store.claim(&d.id, node, 10_000_000, None).await.unwrap(),
        Claim::Claimed(_)
    ));
    store
        .record_outcome(outcome(d, number, next, 2_000 + number as i64), node)
        .await
        .unwrap()
}
