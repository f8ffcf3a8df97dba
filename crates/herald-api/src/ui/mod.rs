//! The operator dashboard at `/ui`: server-rendered pages (askama templates and
//! assets compiled into the binary) over the same query and command functions the
//! API handlers call, so the API stays the source of truth. JavaScript only redraws
//! the live throughput chart.

mod pages;
mod session;

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::AppState;
use session::{cookie, set_cookie, sign_in, LOGIN_COOKIE, SESSION_COOKIE};
pub use session::{Session, Viewer};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/chart.js", get(chart_js))
        .merge(pages::router())
}

/// Renders a template, or answers 500 naming the failure (never the data).
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
pub(crate) struct ErrorPage<'a> {
    pub session: &'a Session,
    pub title: &'a str,
    pub message: String,
}

/// An API error as a page, with the API's status code.
pub(crate) fn error_page(session: &Session, error: ApiError) -> Response {
    let response = error.into_response();
    let status = response.status();
    let message = match status {
        StatusCode::NOT_FOUND => {
            "Not found: it does not exist, or it is not yours to see.".to_string()
        }
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            "The request was not valid; check the filters.".to_string()
        }
        _ => format!("The request failed ({status})."),
    };
    let page = ErrorPage {
        session,
        title: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    (status, render(&page)).into_response()
}

/// A post without this session's CSRF token.
pub(crate) fn forbidden(session: &Session) -> Response {
    let page = ErrorPage {
        session,
        title: "Forbidden",
        message: "This form was not sent from this session's page (missing or wrong CSRF token)."
            .into(),
    };
    (StatusCode::FORBIDDEN, render(&page)).into_response()
}

async fn home(session: Session) -> Redirect {
    match &session.viewer {
        Viewer::Admin => Redirect::to("/ui/tenants"),
        Viewer::Tenant(t) => Redirect::to(&format!("/ui/tenants/{t}")),
    }
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<&'static str>,
    open: bool,
}

async fn login_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let page = LoginPage {
        csrf: csrf.clone(),
        error: None,
        open: state.admin_token.is_none(),
    };
    (
        [(
            header::SET_COOKIE,
            set_cookie(&headers, LOGIN_COOKIE, &csrf, 3600),
        )],
        render(&page),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    csrf: Option<String>,
}

async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE);
    if expected.is_none() || form.csrf != expected {
        return (
            StatusCode::FORBIDDEN,
            "the sign-in form has expired; reload it",
        )
            .into_response();
    }
    match sign_in(&state, &form.token).await {
        Ok(Some(value)) => (
            [(
                header::SET_COOKIE,
                set_cookie(&headers, SESSION_COOKIE, &value, 12 * 3600),
            )],
            Redirect::to("/ui"),
        )
            .into_response(),
        Ok(None) => {
            let page = LoginPage {
                csrf: expected.unwrap_or_default(),
                error: Some("That token is not valid."),
                open: state.admin_token.is_none(),
            };
            (StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(session: Session, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if !session.csrf_ok(form.csrf.as_deref()) {
        return forbidden(&session);
    }
    (
        [(
            header::SET_COOKIE,
            set_cookie(&headers, SESSION_COOKIE, "", 0),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/app.css"),
    )
}

async fn chart_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/chart.js"),
    )
}
