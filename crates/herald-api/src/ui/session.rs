//! Dashboard sessions: a bearer token (the admin's or a tenant's, the same ones the
//! API takes) is exchanged once for a signed session cookie, and every form that
//! changes something carries a CSRF token derived from that cookie.
//!
//! Nothing is stored: the cookie names who signed in (the admin, or a tenant token
//! by its hash) and until when, under an HMAC keyed by the admin token, so every
//! process of a deployment accepts it, a changed admin token ends every session,
//! and a revoked tenant token ends its own at the next request.

use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use herald_core::TenantId;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::routes::tokens;
use crate::AppState;

pub const SESSION_COOKIE: &str = "herald_session";
pub const LOGIN_COOKIE: &str = "herald_login";
/// How long a session lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// Who is looking at the dashboard.
#[derive(Clone, Debug)]
pub enum Viewer {
    Admin,
    Tenant(TenantId),
}

/// A signed-in request: who, and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub struct Session {
    pub viewer: Viewer,
    pub csrf: String,
}

impl Session {
    /// Whether this viewer may see the tenant a path names.
    pub fn sees(&self, tenant: &str) -> bool {
        match &self.viewer {
            Viewer::Admin => true,
            Viewer::Tenant(t) => t.as_str() == tenant,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.viewer, Viewer::Admin)
    }

    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| same(p, &self.csrf))
    }
}

type HmacSha256 = Hmac<Sha256>;

fn key(state: &AppState) -> [u8; 32] {
    static LOCAL: OnceLock<[u8; 32]> = OnceLock::new();
    match &state.admin_token {
        Some(token) => {
            let mut h = Sha256::new();
            h.update(b"herald dashboard sessions\0");
            h.update(token.as_bytes());
            h.finalize().into()
        }
        // No admin token: sessions of this process only.
        None => *LOCAL.get_or_init(rand::random),
    }
}

fn sign(state: &AppState, payload: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(&key(state)).expect("any key length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The cookie value for a viewer who proved `token`, or `None` when the token is
/// neither the admin's nor a live tenant token.
pub async fn sign_in(
    state: &AppState,
    token: &str,
) -> Result<Option<String>, crate::error::ApiError> {
    let token = token.trim();
    let subject = match &state.admin_token {
        Some(admin) if same(&hex_digest(token), &hex_digest(admin)) => "a.-".to_string(),
        None if token.is_empty() => "a.-".to_string(),
        _ => {
            if token.is_empty() {
                return Ok(None);
            }
            let hash = tokens::hash(token);
            match state.engine.find_token(&hash).await? {
                Some(_) => format!("t.{hash}"),
                None => return Ok(None),
            }
        }
    };
    let payload = format!("{subject}.{}", now() + SESSION_SECONDS);
    Ok(Some(format!("{payload}.{}", sign(state, &payload))))
}

fn hex_digest(v: &str) -> String {
    hex::encode(Sha256::digest(v.as_bytes()))
}

/// The session a cookie value proves, if it still holds.
async fn session_of(state: &AppState, cookie: &str) -> Option<Session> {
    let (payload, mac) = cookie.rsplit_once('.')?;
    if !same(mac, &sign(state, payload)) {
        return None;
    }
    let mut parts = payload.splitn(3, '.');
    let (kind, subject, expires) = (parts.next()?, parts.next()?, parts.next()?);
    if expires.parse::<i64>().ok()? < now() {
        return None;
    }
    let viewer = match kind {
        "a" => Viewer::Admin,
        "t" => Viewer::Tenant(state.engine.find_token(subject).await.ok()??.tenant_id),
        _ => return None,
    };
    Some(Session {
        viewer,
        csrf: sign(state, &format!("csrf.{cookie}"))[..32].to_string(),
    })
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure behind TLS.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let value = format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).expect("cookie values are ASCII")
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        match cookie(&parts.headers, SESSION_COOKIE) {
            Some(value) => match session_of(state, &value).await {
                Some(session) => Ok(session),
                None => Err(Redirect::to("/ui/login").into_response()),
            },
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}
