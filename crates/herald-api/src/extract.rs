//! Extractors that turn bad input into [`ApiError`]s naming the field: JSON bodies
//! (400 for malformed JSON or wrong shapes, with the path of the offending field;
//! 413 past the size limit) and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_core::ValidationError;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body parsed into `T`; errors say which field is wrong.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(0)
            } else {
                ApiError::BadJson {
                    message: rejection.body_text(),
                    field: None,
                }
            }
        })?;
        parse_json(&bytes).map(ValidJson)
    }
}

/// An optional body: empty (or blank) means the defaults, else JSON as
/// [`parse_json`] parses it.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// Parses JSON bytes, naming the field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        ApiError::BadJson {
            message: e.into_inner().to_string(),
            field,
        }
    })?;
    de.end().map_err(|e| ApiError::BadJson {
        message: e.to_string(),
        field: None,
    })?;
    Ok(value)
}

/// A query string parsed into `T`.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ValidQuery)
            .map_err(|e| ApiError::BadJson {
                message: format!("bad query string: {e}"),
                field: None,
            })
    }
}

/// An RFC 3339 time from a query parameter, as unix milliseconds.
pub fn time_param(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc).timestamp_millis())
                .map_err(|_| ValidationError::new(field, "must be an RFC 3339 time").into())
        })
        .transpose()
}
