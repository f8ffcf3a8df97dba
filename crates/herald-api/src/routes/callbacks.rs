//! `POST /api/v1/callbacks`: seed 000's ad-hoc callback over HTTP.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use herald_core::message::CallbackSpec;

use super::State;
use crate::error::ApiResult;
use crate::extract::ValidJson;
use crate::wire::MessageOut;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/callbacks", post(create))
}

/// Accepted once committed; the answer's `id` is the message id, polled under the
/// `default` tenant.
#[utoipa::path(post, path = "/api/v1/callbacks", request_body = CallbackSpec,
    responses((status = 202, body = MessageOut), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    state: State,
    ValidJson(spec): ValidJson<CallbackSpec>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let (message, target) = spec.parse()?;
    let ingested = state.engine.callback(message, target).await?;
    if ingested.created {
        state.engine.metrics().ingested("http_callback");
    }
    let status = if ingested.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(MessageOut::new(ingested.message, &ingested.deliveries)),
    ))
}
