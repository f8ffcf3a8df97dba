//! Management authentication: `Authorization: Bearer <token>` on every `/api/v1`
//! route but the OpenAPI document (and seed 003's `receive`, which checks a
//! signature instead), when an admin token is configured.
//!
//! The admin token (compared by SHA-256 digest in constant time) sees everything.
//! A tenant token (found by its hash) sees only paths under its own tenant, except
//! the token routes and deleting the tenant: anything else answers 404, as if it
//! did not exist.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::TenantId;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// Paths that need no token.
const OPEN_PATHS: &[&str] = &["/api/v1/openapi.json"];

fn same(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Whether a tenant token for `tenant` may make this request.
fn within(tenant: &TenantId, method: &Method, path: &str) -> bool {
    let prefix = format!("/api/v1/tenants/{tenant}");
    match path.strip_prefix(&prefix) {
        Some("") | Some("/") => method != Method::DELETE,
        Some(rest) => rest.starts_with('/') && !rest.starts_with("/tokens"),
        None => false,
    }
}

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(admin) = &state.admin_token else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::Unauthorized.into_response();
    };
    if same(presented, admin) {
        return next.run(request).await;
    }
    match state
        .engine
        .find_token(&crate::routes::tokens::hash(presented))
        .await
    {
        Ok(Some(token)) if within(&token.tenant_id, request.method(), request.uri().path()) => {
            next.run(request).await
        }
        Ok(Some(_)) => ApiError::NotFound("resource").into_response(),
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_token_stays_inside_its_tenant() {
        let acme = TenantId::parse("acme", "t").unwrap();
        assert!(within(&acme, &Method::GET, "/api/v1/tenants/acme"));
        assert!(within(
            &acme,
            &Method::POST,
            "/api/v1/tenants/acme/messages"
        ));
        assert!(!within(&acme, &Method::DELETE, "/api/v1/tenants/acme"));
        assert!(!within(&acme, &Method::POST, "/api/v1/tenants/acme/tokens"));
        assert!(!within(
            &acme,
            &Method::GET,
            "/api/v1/tenants/acme-2/messages"
        ));
        assert!(!within(&acme, &Method::GET, "/api/v1/tenants/acmeX"));
        assert!(!within(&acme, &Method::GET, "/api/v1/tenants"));
        assert!(!within(&acme, &Method::POST, "/api/v1/callbacks"));
        assert!(!within(&acme, &Method::GET, "/api/v1/webhook-failures"));
    }
}
