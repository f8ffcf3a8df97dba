//! The dashboard's pages and actions. Each handler checks the viewer may see the
//! tenant, calls the API's own query or command function, and renders.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use herald_core::endpoint::EndpointSpec;
use serde::Deserialize;

use super::{error_page, forbidden, render, Session};
use crate::error::ApiError;
use crate::routes::dead_letters::{dead_letter_list, replay_dead_letter, DeadLetterQuery};
use crate::routes::endpoints::{endpoint_of, rotate_secret, update_endpoint, RotateSpec};
use crate::routes::messages::{attempt_page, message_list, AttemptQuery, MessageQuery};
use crate::routes::monitoring::{
    endpoint_health_of, throughput_of, EndpointHealthOut, EndpointHealthQuery, ThroughputQuery,
};
use crate::routes::tenants::tenant_list;
use crate::routes::{message_id, tenant_id, PageQuery};
use crate::wire::{AttemptOut, DeadLetterOut, EndpointOut, MessageOut, MessageSummary, TenantOut};
use crate::AppState;

type AppStateRef = State<Arc<AppState>>;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui/tenants", get(tenants))
        .route("/ui/tenants/{tid}", get(tenant))
        .route("/ui/tenants/{tid}/throughput.json", get(throughput))
        .route("/ui/tenants/{tid}/endpoints/{eid}", get(endpoint))
        .route("/ui/tenants/{tid}/endpoints/{eid}/active", post(set_active))
        .route("/ui/tenants/{tid}/endpoints/{eid}/rotate", post(rotate))
        .route("/ui/tenants/{tid}/messages", get(messages))
        .route("/ui/tenants/{tid}/messages/{mid}", get(message))
        .route("/ui/tenants/{tid}/dead-letters", get(dead_letters))
        .route("/ui/tenants/{tid}/dead-letters/replay", post(replay))
}

/// Answers 404 unless the viewer may see `tid`, as the API does for tenant tokens.
macro_rules! within {
    ($session:expr, $tid:expr) => {
        if !$session.sees(&$tid) {
            return error_page(&$session, ApiError::NotFound("tenant"));
        }
    };
}

/// Unwraps a query's result or answers with its error page.
macro_rules! or_page {
    ($session:expr, $result:expr) => {
        match $result {
            Ok(value) => value,
            Err(e) => return error_page(&$session, e),
        }
    };
}

#[derive(Template)]
#[template(path = "ui/tenants.html")]
struct TenantsPage<'a> {
    session: &'a Session,
    tenants: Vec<TenantOut>,
    next: Option<String>,
}

async fn tenants(state: AppStateRef, session: Session, Query(q): Query<PageQuery>) -> Response {
    if let super::Viewer::Tenant(t) = &session.viewer {
        return Redirect::to(&format!("/ui/tenants/{t}")).into_response();
    }
    let list = or_page!(session, tenant_list(&state, q).await);
    render(&TenantsPage {
        session: &session,
        tenants: list.data,
        next: list.next_cursor,
    })
}

#[derive(Template)]
#[template(path = "ui/tenant.html")]
struct TenantPage<'a> {
    session: &'a Session,
    tenant: &'a str,
    endpoints: Vec<EndpointHealthOut>,
}

async fn tenant(state: AppStateRef, session: Session, Path(tid): Path<String>) -> Response {
    within!(session, tid);
    let endpoints = or_page!(
        session,
        endpoint_health_of(&state, &tid, EndpointHealthQuery::default()).await
    );
    render(&TenantPage {
        session: &session,
        tenant: &tid,
        endpoints,
    })
}

async fn throughput(
    state: AppStateRef,
    session: Session,
    Path(tid): Path<String>,
    Query(q): Query<ThroughputQuery>,
) -> Response {
    if !session.sees(&tid) {
        return ApiError::NotFound("tenant").into_response();
    }
    match throughput_of(&state, &tid, q).await {
        Ok(out) => Json(out).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "ui/endpoint.html")]
struct EndpointPage<'a> {
    session: &'a Session,
    tenant: &'a str,
    endpoint: EndpointOut,
    health: Option<EndpointHealthOut>,
    notice: Option<&'static str>,
}

impl EndpointPage<'_> {
    /// A setting as the API spells it.
    fn wire(&self, value: impl serde::Serialize) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => other.map(|v| v.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn endpoint(
    state: AppStateRef,
    session: Session,
    Path((tid, eid)): Path<(String, String)>,
    Query(notice): Query<Notice>,
) -> Response {
    within!(session, tid);
    let endpoint = or_page!(session, endpoint_of(&state, &tid, &eid).await);
    let health = or_page!(
        session,
        endpoint_health_of(&state, &tid, EndpointHealthQuery::default()).await
    )
    .into_iter()
    .find(|h| h.endpoint_id == endpoint.id);
    let notice = match notice.done.as_deref() {
        Some("enabled") => Some("Endpoint enabled."),
        Some("disabled") => Some("Endpoint disabled: nothing is sent to it until it is enabled."),
        Some("rotated") => Some("Secret rotated: the old key keeps signing for 24 hours. Read the new one through the API."),
        _ => None,
    };
    render(&EndpointPage {
        session: &session,
        tenant: &tid,
        endpoint,
        health,
        notice,
    })
}

#[derive(Deserialize)]
struct ActiveForm {
    active: String,
    csrf: Option<String>,
}

async fn set_active(
    state: AppStateRef,
    session: Session,
    Path((tid, eid)): Path<(String, String)>,
    Form(form): Form<ActiveForm>,
) -> Response {
    within!(session, tid);
    if !session.csrf_ok(form.csrf.as_deref()) {
        return forbidden(&session);
    }
    let active = form.active == "true";
    let spec = EndpointSpec {
        active: Some(active),
        ..Default::default()
    };
    or_page!(session, update_endpoint(&state, &tid, &eid, spec).await);
    let done = if active { "enabled" } else { "disabled" };
    Redirect::to(&format!("/ui/tenants/{tid}/endpoints/{eid}?done={done}")).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn rotate(
    state: AppStateRef,
    session: Session,
    Path((tid, eid)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    within!(session, tid);
    if !session.csrf_ok(form.csrf.as_deref()) {
        return forbidden(&session);
    }
    or_page!(
        session,
        rotate_secret(&state, &tid, &eid, RotateSpec::default()).await
    );
    Redirect::to(&format!("/ui/tenants/{tid}/endpoints/{eid}?done=rotated")).into_response()
}

#[derive(Template)]
#[template(path = "ui/messages.html")]
struct MessagesPage<'a> {
    session: &'a Session,
    tenant: &'a str,
    messages: Vec<MessageSummary>,
    next: Option<String>,
    event_type: String,
    status: String,
    since: String,
    until: String,
}

impl MessagesPage<'_> {
    /// The status choices, the chosen one marked.
    fn statuses(&self) -> Vec<(&'static str, bool)> {
        [
            "",
            "pending",
            "delivering",
            "succeeded",
            "dead",
            "cancelled",
        ]
        .into_iter()
        .map(|s| (s, s == self.status))
        .collect()
    }

    /// The link to the next page, with the same filters.
    fn next_link(&self, cursor: &str) -> String {
        let query = serde_urlencoded::to_string([
            ("event_type", self.event_type.as_str()),
            ("status", self.status.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
            ("cursor", cursor),
        ])
        .unwrap_or_default();
        format!("/ui/tenants/{}/messages?{query}", self.tenant)
    }
}

async fn messages(
    state: AppStateRef,
    session: Session,
    Path(tid): Path<String>,
    Query(q): Query<MessageQuery>,
) -> Response {
    within!(session, tid);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (event_type, status, since, until) = (
        text(&q.event_type),
        text(&q.status),
        text(&q.since),
        text(&q.until),
    );
    let list = or_page!(session, message_list(&state, &tid, q).await);
    render(&MessagesPage {
        session: &session,
        tenant: &tid,
        messages: list.data,
        next: list.next_cursor,
        event_type,
        status,
        since,
        until,
    })
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage<'a> {
    session: &'a Session,
    tenant: &'a str,
    message: MessageOut,
    payload: String,
    attempts: Vec<AttemptOut>,
}

async fn message(
    state: AppStateRef,
    session: Session,
    Path((tid, mid)): Path<(String, String)>,
) -> Response {
    within!(session, tid);
    let (tenant, id) = (
        or_page!(session, tenant_id(&tid)),
        or_page!(session, message_id(&mid)),
    );
    let (message, deliveries) = or_page!(
        session,
        state
            .engine
            .message(&tenant, &id)
            .await
            .map_err(ApiError::from)
    );
    let message = MessageOut::new(message, &deliveries);
    let query = AttemptQuery {
        limit: Some("500".into()),
        ..Default::default()
    };
    let attempts = or_page!(session, attempt_page(&state, &tid, query, Some(id)).await);
    render(&MessagePage {
        session: &session,
        tenant: &tid,
        payload: serde_json::from_str::<serde_json::Value>(message.payload.get())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_default(),
        message,
        attempts: attempts.data,
    })
}

#[derive(Template)]
#[template(path = "ui/dead_letters.html")]
struct DeadLettersPage<'a> {
    session: &'a Session,
    tenant: &'a str,
    dead: Vec<DeadLetterOut>,
    next: Option<String>,
    replayed: Option<usize>,
    refused: usize,
}

#[derive(Deserialize)]
struct DeadLettersQuery {
    cursor: Option<String>,
    replayed: Option<usize>,
    refused: Option<usize>,
}

async fn dead_letters(
    state: AppStateRef,
    session: Session,
    Path(tid): Path<String>,
    Query(q): Query<DeadLettersQuery>,
) -> Response {
    within!(session, tid);
    let query = DeadLetterQuery {
        cursor: q.cursor,
        ..Default::default()
    };
    let list = or_page!(session, dead_letter_list(&state, &tid, query).await);
    render(&DeadLettersPage {
        session: &session,
        tenant: &tid,
        dead: list.data,
        next: list.next_cursor,
        replayed: q.replayed,
        refused: q.refused.unwrap_or(0),
    })
}

/// Replays the dead letters whose ids the form selected (one, or every one ticked).
async fn replay(
    state: AppStateRef,
    session: Session,
    Path(tid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    within!(session, tid);
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    if !session.csrf_ok(csrf) {
        return forbidden(&session);
    }
    let (mut replayed, mut refused) = (0, 0);
    for (_, id) in fields.iter().filter(|(k, _)| k == "delivery_id") {
        match replay_dead_letter(&state, &tid, id).await {
            Ok(_) => replayed += 1,
            // Replayed meanwhile, or its endpoint deleted: the others go on.
            Err(_) => refused += 1,
        }
    }
    Redirect::to(&format!(
        "/ui/tenants/{tid}/dead-letters?replayed={replayed}&refused={refused}"
    ))
    .into_response()
}
