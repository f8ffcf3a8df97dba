//! Decoding PostgreSQL rows into the store's records.

use herald_core::delivery::DeliveryStatus;
use herald_core::{AttemptId, DeliveryId, EndpointId, MessageId, TenantId};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::crypto::MasterKey;
use crate::{Attempt, DeadLetter, Delivery, StoreError, StoreResult, StoredMessage, Tenant};

pub(crate) const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.message_id, d.tenant_id, d.endpoint_id, \
    d.target, d.status, d.attempts, d.attempt_base, d.next_attempt_at, d.last_error, \
    d.dead_reason, d.dead_at, d.created_at";

pub(crate) const MESSAGE_COLUMNS: &str =
    "id, tenant_id, event_type, payload, headers, context, idempotency_key, created_at";

/// An attempt as read: a body kept with the message is read from there.
pub(crate) const ATTEMPT_COLUMNS: &str = "id, delivery_id, message_id, tenant_id, endpoint_id, \
    attempt, method, url, request_headers, response_status, response_headers, response_body, \
    duration_ms, outcome, error_kind, error, created_at, \
    CASE WHEN body_from_payload THEN (SELECT payload FROM messages WHERE messages.id = attempts.message_id) \
    ELSE request_body END, body_from_payload";

pub(crate) const TENANT_COLUMNS: &str = "id, name, retry_policy, created_at, updated_at";

pub(crate) fn json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_json<T: DeserializeOwned>(text: Option<String>) -> StoreResult<Option<T>> {
    text.map(|t| json(&t)).transpose()
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    i: usize,
) -> StoreResult<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn tenant(row: &PgRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId::from_stored(get(row, 0)?),
        name: get(row, 1)?,
        retry_policy: opt_json(get(row, 2)?)?,
        created_at: get(row, 3)?,
        updated_at: get(row, 4)?,
    })
}

pub(crate) fn delivery(row: &PgRow, key: &MasterKey) -> StoreResult<Delivery> {
    let status: String = get(row, 6)?;
    Ok(Delivery {
        seq: get(row, 0)?,
        id: DeliveryId::from_stored(get(row, 1)?),
        message_id: MessageId::from_stored(get(row, 2)?),
        tenant_id: TenantId::from_stored(get(row, 3)?),
        endpoint_id: get::<Option<String>>(row, 4)?.map(EndpointId::from_stored),
        target: get::<Option<String>>(row, 5)?
            .map(|sealed| key.open_json(&sealed))
            .transpose()?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        attempts: get::<i32>(row, 7)? as u32,
        attempt_base: get::<i32>(row, 8)? as u32,
        next_attempt_at: get(row, 9)?,
        last_error: get(row, 10)?,
        dead_reason: get(row, 11)?,
        dead_at: get(row, 12)?,
        created_at: get(row, 13)?,
        claimed_until: None,
    })
}

/// A dead letter: a delivery's columns, then event type, URL and replayability.
pub(crate) fn dead_letter(row: &PgRow, key: &MasterKey) -> StoreResult<DeadLetter> {
    Ok(DeadLetter {
        delivery: delivery(row, key)?,
        event_type: get(row, 14)?,
        url: get(row, 15)?,
        replayable: get::<Option<bool>>(row, 16)?.unwrap_or(false),
    })
}

pub(crate) fn message(row: &PgRow) -> StoreResult<StoredMessage> {
    message_at(row, 0)
}

/// A message whose `MESSAGE_COLUMNS` start at column `first` (after a delivery's).
pub(crate) fn message_at(row: &PgRow, first: usize) -> StoreResult<StoredMessage> {
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

pub(crate) fn attempt(row: &PgRow) -> StoreResult<Attempt> {
    Ok(Attempt {
        id: AttemptId::from_stored(get(row, 0)?),
        delivery_id: DeliveryId::from_stored(get(row, 1)?),
        message_id: MessageId::from_stored(get(row, 2)?),
        tenant_id: TenantId::from_stored(get(row, 3)?),
        endpoint_id: get::<Option<String>>(row, 4)?.map(EndpointId::from_stored),
        attempt: get::<i32>(row, 5)? as u32,
        method: get(row, 6)?,
        url: get(row, 7)?,
        request_headers: json(&get::<String>(row, 8)?)?,
        response_status: get::<Option<i32>>(row, 9)?.map(|s| s as u16),
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

/// A WHERE clause built from optional filters; placeholders are numbered `$n` as
/// they are added, and `binds` holds the values in order.
#[derive(Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    pub(crate) binds: Vec<Bind>,
}

pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

impl Conditions {
    /// `clause` uses `?` for its one value.
    pub(crate) fn add(&mut self, clause: &str, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.clauses
            .push(clause.replace('?', &format!("${}", self.binds.len())));
        self
    }

    pub(crate) fn text(&mut self, clause: &str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = value {
            self.add(clause, Bind::Text(v.into()));
        }
        self
    }

    pub(crate) fn int(&mut self, clause: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.add(clause, Bind::Int(v));
        }
        self
    }

    pub(crate) fn fixed(&mut self, clause: &str) -> &mut Self {
        self.clauses.push(clause.to_string());
        self
    }

    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// Binds a value used outside the WHERE clause; returns its placeholder.
    pub(crate) fn param(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    pub(crate) fn query<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut query = sqlx::query(sql);
        for bind in &self.binds {
            query = match bind {
                Bind::Text(t) => query.bind(t.as_str()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }
}
