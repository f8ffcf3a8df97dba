//! The OpenAPI document, generated from the handlers' types and annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{
    callbacks, dead_letters, endpoints, messages, monitoring, seed003, tenants, tokens,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Self-hosted webhook delivery: the management API."
    ),
    paths(
        tenants::create,
        tenants::list,
        tenants::read,
        tenants::update,
        tenants::remove,
        endpoints::create,
        endpoints::list,
        endpoints::read,
        endpoints::update,
        endpoints::remove,
        endpoints::secret,
        endpoints::rotate,
        messages::create,
        messages::list,
        messages::read,
        messages::attempts,
        messages::message_attempts,
        messages::resend,
        messages::cancel,
        dead_letters::list,
        dead_letters::replay_one,
        dead_letters::replay_bulk,
        callbacks::create,
        seed003::configure,
        seed003::send,
        seed003::configs,
        seed003::metrics,
        seed003::dead_letters,
        seed003::retry,
        seed003::remove,
        seed003::receive,
        tokens::create,
        tokens::list,
        tokens::revoke,
        monitoring::tenant_stats,
        monitoring::endpoint_health,
        monitoring::throughput,
        monitoring::window,
        monitoring::health,
        monitoring::failures,
    )
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
