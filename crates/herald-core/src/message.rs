//! Messages: one event as a producer handed it in, and the ad-hoc callback body of
//! seed 000. Parsing here is the one validation every ingest path shares.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::body::canonical_json;
use crate::delivery::AdHocTarget;
use crate::endpoint::{parse_method, validate_url};
use crate::filter::EventType;
use crate::headers::validate_headers;
use crate::retry::RetryPolicySpec;
use crate::signing::{SignatureConfig, SignatureScheme, SigningKey};
use crate::{EndpointId, ValidationError};

/// A message as a caller writes it (`POST .../messages`).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub idempotency_key: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Deliver only to these endpoints (still subject to their filters and state).
    pub endpoint_ids: Option<Vec<String>>,
}

/// A validated message, ready for ingest.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedMessage {
    pub event_type: EventType,
    /// The body as sent: compact JSON with sorted keys.
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub context: Option<Value>,
    pub endpoint_ids: Option<Vec<EndpointId>>,
}

fn idempotency_key(key: Option<String>) -> Result<Option<String>, ValidationError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 256 => Err(ValidationError::new(
            "idempotency_key",
            "must be 1 to 256 characters",
        )),
        other => Ok(other),
    }
}

impl MessageSpec {
    pub fn parse(self) -> Result<ParsedMessage, ValidationError> {
        let headers = self.headers.unwrap_or_default();
        validate_headers(&headers, "headers")?;
        let endpoint_ids = self
            .endpoint_ids
            .map(|ids| {
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| EndpointId::parse(id, &format!("endpoint_ids[{i}]")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(ParsedMessage {
            event_type: EventType::parse(&self.event_type, "event_type")?,
            payload: canonical_json(&self.payload),
            idempotency_key: idempotency_key(self.idempotency_key)?,
            headers,
            context: self.context,
            endpoint_ids,
        })
    }
}

/// Seed 000's callback body, plus herald's optional `retry_policy` and `headers`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    pub target_url: String,
    pub target_method: Option<String>,
    /// Write-only: the key of the `X-Signature` HMAC.
    pub hmac_secret: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub retry_policy: Option<RetryPolicySpec>,
    pub headers: Option<BTreeMap<String, String>>,
    pub idempotency_key: Option<String>,
}

/// The event type ad-hoc callbacks are stored under.
pub const CALLBACK_EVENT_TYPE: &str = "callback";

impl CallbackSpec {
    /// The message and its one ad-hoc target.
    pub fn parse(self) -> Result<(ParsedMessage, AdHocTarget), ValidationError> {
        validate_url(&self.target_url, "target_url")?;
        let method = parse_method(
            self.target_method.as_deref().unwrap_or("POST"),
            "target_method",
        )?;
        if self.hmac_secret.is_empty() || self.hmac_secret.len() > 512 {
            return Err(ValidationError::new(
                "hmac_secret",
                "must be 1 to 512 characters",
            ));
        }
        let headers = self.headers.unwrap_or_default();
        validate_headers(&headers, "headers")?;
        let retry_policy = self
            .retry_policy
            .map(|p| p.parse().map_err(|e| e.within("retry_policy")))
            .transpose()?;
        let target = AdHocTarget {
            url: self.target_url,
            method,
            signature: SignatureConfig {
                scheme: SignatureScheme::HmacSha256Hex,
                header: SignatureScheme::HmacSha256Hex.default_header().into(),
                timestamp_header: "X-Timestamp".into(),
                keys: vec![SigningKey {
                    secret: self.hmac_secret,
                    public_key: None,
                    expires_at: None,
                }],
            },
            headers: BTreeMap::new(),
            retry_policy,
            auth: Default::default(),
            timeout_seconds: None,
            user_agent: None,
        };
        let message = ParsedMessage {
            event_type: EventType::from_stored(CALLBACK_EVENT_TYPE.into()),
            payload: canonical_json(&self.payload),
            idempotency_key: idempotency_key(self.idempotency_key)?,
            headers,
            context: None,
            endpoint_ids: None,
        };
        Ok((message, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_000_body_parses_with_post_default() {
        let spec: CallbackSpec = serde_json::from_str(
            r#"{"target_url":"https://example.com/webhook","hmac_secret":"your-secret-key","payload":{"b":1,"a":{"d":2,"c":3}}}"#,
        )
        .unwrap();
        let (message, target) = spec.parse().unwrap();
        assert_eq!(target.method, "POST");
        assert_eq!(message.payload, r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn message_fields_are_checked() {
        let spec: MessageSpec =
            serde_json::from_str(r#"{"event_type":"bad type","payload":{}}"#).unwrap();
        assert_eq!(spec.parse().unwrap_err().field, "event_type");
        let spec: MessageSpec =
            serde_json::from_str(r#"{"event_type":"a.b","payload":{},"endpoint_ids":["ep_x"]}"#)
                .unwrap();
        assert_eq!(spec.parse().unwrap_err().field, "endpoint_ids[0]");
        assert!(
            serde_json::from_str::<MessageSpec>(r#"{"event_type":"a","payload":{},"x":1}"#)
                .is_err()
        );
    }

    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from)
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_ingest_body_parses_or_names_a_field(event_type in ".*", key in proptest::option::of(".*"), payload in any_json(), headers in prop::collection::btree_map(".*", ".*", 0..3)) {
            let spec = MessageSpec { event_type, payload, idempotency_key: key, headers: Some(headers), context: None, endpoint_ids: None };
            match spec.parse() {
                Ok(parsed) => prop_assert!(serde_json::from_str::<Value>(&parsed.payload).is_ok()),
                Err(e) => prop_assert!(!e.field.is_empty()),
            }
        }

        #[test]
        fn arbitrary_json_never_panics_the_decoders(body in any_json()) {
            let text = body.to_string();
            let _ = serde_json::from_str::<MessageSpec>(&text).map(|s| s.parse());
            let _ = serde_json::from_str::<CallbackSpec>(&text).map(|s| s.parse());
            let _ = serde_json::from_str::<crate::endpoint::EndpointSpec>(&text);
        }
    }
}
