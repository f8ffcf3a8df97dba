//! `/api/v1/tenants/{tid}/endpoints`: subscriber endpoints and their signing secret.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::endpoint::{Endpoint, EndpointSpec};
use herald_core::signing::SignatureScheme;
use serde::{Deserialize, Serialize};

use super::{endpoint_id, page, tenant, PageQuery, State};
use crate::error::ApiResult;
use crate::extract::{ValidJson, ValidQuery};
use crate::wire::{EndpointOut, List};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants/{tid}/endpoints", get(list).post(create))
        .route(
            "/api/v1/tenants/{tid}/endpoints/{eid}",
            get(read).patch(update).delete(remove),
        )
        .route("/api/v1/tenants/{tid}/endpoints/{eid}/secret", get(secret))
        .route(
            "/api/v1/tenants/{tid}/endpoints/{eid}/secret/rotate",
            axum::routing::post(rotate),
        )
}

fn out(state: &AppState, endpoint: &Endpoint) -> Json<EndpointOut> {
    Json(EndpointOut::new(
        endpoint,
        &state.engine.config().user_agent,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/endpoints", request_body = EndpointSpec,
    responses((status = 201, body = EndpointOut), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    state: State,
    Path(tid): Path<String>,
    ValidJson(spec): ValidJson<EndpointSpec>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let tenant = tenant(&state, &tid).await?;
    let endpoint = Endpoint::create(
        tenant.id,
        spec,
        &state.engine.config().endpoint_defaults,
        chrono::Utc::now(),
    )?;
    state.engine.create_endpoint(endpoint.clone()).await?;
    Ok((StatusCode::CREATED, out(&state, &endpoint)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoints", responses((status = 200, body = List<EndpointOut>)))]
pub async fn list(
    state: State,
    Path(tid): Path<String>,
    ValidQuery(q): ValidQuery<PageQuery>,
) -> ApiResult<Json<List<EndpointOut>>> {
    Ok(Json(endpoint_list(&state, &tid, q).await?))
}

/// A page of a tenant's endpoints: the list route's query, shared with the
/// dashboard.
pub async fn endpoint_list(
    state: &AppState,
    tid: &str,
    q: PageQuery,
) -> ApiResult<List<EndpointOut>> {
    let tenant = tenant(state, tid).await?;
    let page = state
        .engine
        .store()
        .list_endpoints(&tenant.id, page(q.limit.as_deref(), q.cursor)?)
        .await?;
    let agent = state.engine.config().user_agent.clone();
    Ok(List::from_page(page, |e| EndpointOut::new(&e, &agent)))
}

/// One endpoint of a tenant, as the API shows it.
pub async fn endpoint_of(state: &AppState, tid: &str, eid: &str) -> ApiResult<EndpointOut> {
    let endpoint = tenant_endpoint(state, tid, eid).await?;
    Ok(EndpointOut::new(
        &endpoint,
        &state.engine.config().user_agent,
    ))
}

async fn tenant_endpoint(state: &AppState, tid: &str, eid: &str) -> ApiResult<Arc<Endpoint>> {
    let tenant = tenant(state, tid).await?;
    Ok(state
        .engine
        .endpoint(&tenant.id, &endpoint_id(eid)?)
        .await?)
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoints/{eid}", responses((status = 200, body = EndpointOut)))]
pub async fn read(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    let endpoint = tenant_endpoint(&state, &tid, &eid).await?;
    Ok(out(&state, &endpoint))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tid}/endpoints/{eid}", request_body = EndpointSpec, responses((status = 200, body = EndpointOut)))]
pub async fn update(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
    ValidJson(spec): ValidJson<EndpointSpec>,
) -> ApiResult<Json<EndpointOut>> {
    let endpoint = update_endpoint(&state, &tid, &eid, spec).await?;
    Ok(out(&state, &endpoint))
}

/// Applies a partial spec to an endpoint (enabling or disabling it among others).
pub async fn update_endpoint(
    state: &AppState,
    tid: &str,
    eid: &str,
    spec: EndpointSpec,
) -> ApiResult<Endpoint> {
    let mut endpoint = (*tenant_endpoint(state, tid, eid).await?).clone();
    endpoint.apply(spec, chrono::Utc::now())?;
    state.engine.update_endpoint(endpoint.clone()).await?;
    Ok(endpoint)
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tid}/endpoints/{eid}", responses((status = 204)))]
pub async fn remove(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = tenant(&state, &tid).await?;
    state
        .engine
        .delete_endpoint(&tenant.id, &endpoint_id(&eid)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a receiver needs to verify herald's requests: the current shared secret,
/// or for asymmetric schemes the public key (never the private key).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    pub scheme: SignatureScheme,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl SecretOut {
    fn of(endpoint: &Endpoint) -> Self {
        let key = endpoint.signature.current();
        let scheme = endpoint.signature.scheme;
        if scheme.is_asymmetric() {
            Self {
                scheme,
                secret: None,
                public_key: key.public_key.clone(),
            }
        } else {
            Self {
                scheme,
                secret: Some(key.secret.clone()),
                public_key: None,
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoints/{eid}/secret", responses((status = 200, body = SecretOut)))]
pub async fn secret(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
) -> ApiResult<Json<SecretOut>> {
    let endpoint = tenant_endpoint(&state, &tid, &eid).await?;
    Ok(Json(SecretOut::of(&endpoint)))
}

/// A new signing key; the old one keeps signing (both signatures are sent) for
/// `grace_seconds`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSpec {
    /// The new secret (or private key); generated when absent.
    pub secret: Option<String>,
    /// How long the old key keeps signing; default 86400.
    pub grace_seconds: Option<f64>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/endpoints/{eid}/secret/rotate", request_body = RotateSpec, responses((status = 200, body = SecretOut)))]
pub async fn rotate(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SecretOut>> {
    let spec: RotateSpec = crate::extract::optional_json(&body)?;
    let endpoint = rotate_secret(&state, &tid, &eid, spec).await?;
    Ok(Json(SecretOut::of(&endpoint)))
}

/// A new signing key for an endpoint; the old one keeps signing for the grace.
pub async fn rotate_secret(
    state: &AppState,
    tid: &str,
    eid: &str,
    spec: RotateSpec,
) -> ApiResult<Endpoint> {
    let mut endpoint = (*tenant_endpoint(state, tid, eid).await?).clone();
    let now = chrono::Utc::now();
    endpoint
        .signature
        .rotate(spec.secret, spec.grace_seconds.unwrap_or(86_400.0), now)?;
    endpoint.updated_at = now;
    state.engine.update_endpoint(endpoint.clone()).await?;
    Ok(endpoint)
}
