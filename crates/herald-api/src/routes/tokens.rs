//! `/api/v1/tenants/{tid}/tokens`: tenant-scoped API tokens (admin only). A token
//! is shown once, when made; only its SHA-256 hash is kept.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::Engine as _;
use herald_core::ids::TokenId;
use herald_core::ValidationError;
use herald_store::ApiToken;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{tenant, State};
use crate::error::{ApiError, ApiResult};
use crate::wire::time;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants/{tid}/tokens", get(list).post(create))
        .route("/api/v1/tenants/{tid}/tokens/{kid}", delete(revoke))
}

/// The hash a token is kept and looked up by.
pub fn hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    /// Shown once, in the answer that makes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokensOut {
    pub data: Vec<TokenOut>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tid}/tokens", request_body = TokenSpec, responses((status = 201, body = TokenOut)))]
pub async fn create(
    state: State,
    Path(tid): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<TokenOut>)> {
    let spec: TokenSpec = crate::extract::optional_json(&body)?;
    let tenant = tenant(&state, &tid).await?;
    let name = spec.name.unwrap_or_default();
    if name.len() > 256 {
        return Err(ValidationError::new("name", "must be at most 256 characters").into());
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "htk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let record = ApiToken {
        id: TokenId::new().to_string(),
        tenant_id: tenant.id,
        name,
        hash: hash(&token),
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    state.engine.store().create_token(record.clone()).await?;
    let out = TokenOut {
        id: record.id,
        name: record.name,
        token: Some(token),
        created_at: time(record.created_at),
    };
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tid}/tokens", responses((status = 200, body = TokensOut)))]
pub async fn list(state: State, Path(tid): Path<String>) -> ApiResult<Json<TokensOut>> {
    let tenant = tenant(&state, &tid).await?;
    let tokens = state.engine.store().list_tokens(&tenant.id).await?;
    let data = tokens
        .into_iter()
        .map(|t| TokenOut {
            id: t.id,
            name: t.name,
            token: None,
            created_at: time(t.created_at),
        })
        .collect();
    Ok(Json(TokensOut { data }))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tid}/tokens/{kid}", responses((status = 204), (status = 404)))]
pub async fn revoke(
    state: State,
    Path((tid, kid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = tenant(&state, &tid).await?;
    state
        .engine
        .revoke_token(&tenant.id, &kid)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::NotFound("token"),
            other => other,
        })?;
    Ok(StatusCode::NO_CONTENT)
}
