//! `/api/v1/tenants/{tid}/endpoints`: subscriber endpoints and their signing secret.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::endpoint::{Endpoint, EndpointSpec};
use herald_core::signing::SignatureScheme;
use serde::{Deserialize, Serialize};

use super::{endpoint_id, page, tenant, State};
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
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
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
    let tenant = tenant(&state, &tid).await?;
    let page = state
        .engine
        .store()
        .list_endpoints(&tenant.id, page(q.limit.as_deref(), q.cursor)?)
        .await?;
    let agent = state.engine.config().user_agent.clone();
    Ok(Json(List::from_page(page, |e| {
        EndpointOut::new(&e, &agent)
    })))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoints/{eid}", responses((status = 200, body = EndpointOut)))]
pub async fn read(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    let tenant = tenant(&state, &tid).await?;
    let endpoint = state
        .engine
        .endpoint(&tenant.id, &endpoint_id(&eid)?)
        .await?;
    Ok(out(&state, &endpoint))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tid}/endpoints/{eid}", request_body = EndpointSpec, responses((status = 200, body = EndpointOut)))]
pub async fn update(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
    ValidJson(spec): ValidJson<EndpointSpec>,
) -> ApiResult<Json<EndpointOut>> {
    let tenant = tenant(&state, &tid).await?;
    let mut endpoint = (*state
        .engine
        .endpoint(&tenant.id, &endpoint_id(&eid)?)
        .await?)
        .clone();
    endpoint.apply(spec, chrono::Utc::now())?;
    state.engine.update_endpoint(endpoint.clone()).await?;
    Ok(out(&state, &endpoint))
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

/// The current signing secret: what a receiver needs to verify herald's requests.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    pub scheme: SignatureScheme,
    pub secret: String,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/endpoints/{eid}/secret", responses((status = 200, body = SecretOut)))]
pub async fn secret(
    state: State,
    Path((tid, eid)): Path<(String, String)>,
) -> ApiResult<Json<SecretOut>> {
    let tenant = tenant(&state, &tid).await?;
    let endpoint = state
        .engine
        .endpoint(&tenant.id, &endpoint_id(&eid)?)
        .await?;
    let secret = endpoint
        .signature
        .keys
        .first()
        .map(|k| k.secret.clone())
        .unwrap_or_default();
    Ok(Json(SecretOut {
        scheme: endpoint.signature.scheme,
        secret,
    }))
}
