//! Decoding SQLite rows into the store's records, and the small SQL helpers the
//! queries share.

use herald_core::delivery::DeliveryStatus;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId};
use rusqlite::types::{FromSql, Value};
use rusqlite::Row;
use serde::de::DeserializeOwned;

use crate::crypto::MasterKey;
use crate::{Attempt, DeadLetter, Delivery, StoredMessage, Tenant};

pub(crate) const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.message_id, d.tenant_id, d.endpoint_id, \
    d.target, d.status, d.attempts, d.attempt_base, d.next_attempt_at, d.last_error, \
    d.dead_reason, d.dead_at, d.created_at";

pub(crate) const MESSAGE_COLUMNS: &str =
    "id, tenant_id, event_type, payload, headers, context, idempotency_key, created_at";

/// The attempt columns every list shares, followed by `$tail`.
macro_rules! attempt_columns {
    ($tail:literal) => {
        concat!(
            "id, delivery_id, message_id, tenant_id, endpoint_id, attempt, method, url, ",
            "request_headers, response_status, response_headers, response_body, duration_ms, ",
            "outcome, error_kind, error, created_at, ",
            $tail
        )
    };
}

/// An attempt's columns as written.
pub(crate) const ATTEMPT_COLUMNS: &str = attempt_columns!("request_body, body_from_payload");

/// [`ATTEMPT_COLUMNS`] as read: a body kept with the message is read from there.
pub(crate) const ATTEMPT_READ: &str = attempt_columns!(
    "CASE WHEN body_from_payload THEN (SELECT payload FROM messages WHERE messages.tenant_id = attempts.tenant_id \
     AND messages.id = attempts.message_id) \
     ELSE request_body END, body_from_payload"
);

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

pub(crate) fn json<T: DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(conversion)
}

fn opt_json<T: DeserializeOwned>(text: Option<String>) -> rusqlite::Result<Option<T>> {
    text.map(|t| json(&t)).transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialize")
}

fn get<T: FromSql>(row: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    row.get(i)
}

pub(crate) fn tenant(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_stored(get(row, 0)?),
        name: get(row, 1)?,
        retry_policy: opt_json(get(row, 2)?)?,
        created_at: get(row, 3)?,
        updated_at: get(row, 4)?,
    })
}

pub(crate) fn delivery(row: &Row<'_>, key: &MasterKey) -> rusqlite::Result<Delivery> {
    let status: String = get(row, 6)?;
    Ok(Delivery {
        seq: get(row, 0)?,
        id: DeliveryId::from_stored(get(row, 1)?),
        message_id: MessageId::from_stored(get(row, 2)?),
        tenant_id: TenantId::from_stored(get(row, 3)?),
        endpoint_id: get::<Option<String>>(row, 4)?.map(EndpointId::from_stored),
        target: get::<Option<String>>(row, 5)?
            .map(|sealed| key.open_json(&sealed).map_err(conversion))
            .transpose()?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| conversion(std::io::Error::other(format!("unknown status {status}"))))?,
        attempts: get(row, 7)?,
        attempt_base: get(row, 8)?,
        next_attempt_at: get(row, 9)?,
        last_error: get(row, 10)?,
        dead_reason: get(row, 11)?,
        dead_at: get(row, 12)?,
        created_at: get(row, 13)?,
        claimed_until: None,
    })
}

/// A dead letter: a delivery's columns, then event type, URL and replayability.
pub(crate) fn dead_letter(row: &Row<'_>, key: &MasterKey) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        delivery: delivery(row, key)?,
        event_type: get(row, 14)?,
        url: get(row, 15)?,
        replayable: get::<Option<bool>>(row, 16)?.unwrap_or(false),
    })
}

pub(crate) fn message(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    message_at(row, 0)
}

/// A message whose `MESSAGE_COLUMNS` start at column `first` (after a delivery's).
pub(crate) fn message_at(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: MessageId::from_stored(get(row, first)?),
        tenant_id: TenantId::from_stored(get(row, first + 1)?),
        event_type: get(row, first + 2)?,
        payload: get(row, first + 3)?,
        headers: opt_json(get(row, first + 4)?)?.unwrap_or_default(),
        context: opt_json(get(row, first + 5)?)?,
        idempotency_key: get(row, first + 6)?,
        created_at: get(row, first + 7)?,
    })
}

pub(crate) fn attempt(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: herald_core::AttemptId::from_stored(get(row, 0)?),
        delivery_id: DeliveryId::from_stored(get(row, 1)?),
        message_id: MessageId::from_stored(get(row, 2)?),
        tenant_id: TenantId::from_stored(get(row, 3)?),
        endpoint_id: get::<Option<String>>(row, 4)?.map(EndpointId::from_stored),
        attempt: get(row, 5)?,
        method: get(row, 6)?,
        url: get(row, 7)?,
        request_headers: json(&get::<String>(row, 8)?)?,
        response_status: get(row, 9)?,
        response_headers: json(&get::<String>(row, 10)?)?,
        response_body: get(row, 11)?,
        duration_ms: get::<i64>(row, 12)? as u64,
        outcome: get(row, 13)?,
        error_kind: get(row, 14)?,
        error: get(row, 15)?,
        created_at: get(row, 16)?,
        request_body: get(row, 17)?,
        request_body_is_payload: get(row, 18)?,
    })
}

/// A WHERE clause built from optional filters, with its parameters in order.
#[derive(Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    pub(crate) params: Vec<Value>,
}

impl Conditions {
    pub(crate) fn add(&mut self, clause: &str, value: impl Into<Value>) -> &mut Self {
        self.clauses.push(clause.to_string());
        self.params.push(value.into());
        self
    }

    pub(crate) fn add_opt<T: Into<Value>>(&mut self, clause: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.add(clause, v);
        }
        self
    }

    pub(crate) fn fixed(&mut self, clause: &str) -> &mut Self {
        self.clauses.push(clause.to_string());
        self
    }

    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1 = 1".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
}
