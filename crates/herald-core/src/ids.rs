//! Prefixed, time-sortable ids (`ep_01J...`): the prefix tells a reader what an id
//! names, the ULID after it sorts by creation time so lists and cursors need no
//! second column.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ulid::{Generator, Ulid};

use crate::ValidationError;

static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);

/// A new ULID, strictly increasing within this process even inside one millisecond.
fn next_ulid() -> Ulid {
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(Generator::new);
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, example = $prefix)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Parses an id a caller sent; `field` names it in the error.
            pub fn parse(value: &str, field: &str) -> Result<Self, ValidationError> {
                match value.strip_prefix($prefix) {
                    Some(rest) if Ulid::from_string(rest).is_ok() => Ok(Self(value.to_string())),
                    _ => Err(ValidationError::new(
                        field,
                        format!("must be an id starting with `{}`", $prefix),
                    )),
                }
            }

            /// An id read back from the store, which only holds ids this crate made.
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// An endpoint: one subscriber URL and how to deliver to it.
    EndpointId, "ep_");
prefixed_id!(
    /// A message: one event as a producer handed it in.
    MessageId, "msg_");
prefixed_id!(
    /// A delivery: one message going to one endpoint or ad-hoc URL. Also a dead letter's id.
    DeliveryId, "dlv_");
prefixed_id!(
    /// One HTTP try of a delivery.
    AttemptId, "att_");
prefixed_id!(
    /// A tenant-scoped API token.
    TokenId, "tok_");

/// A tenant id: `ten_<ULID>` when herald makes it, or a caller-chosen name of letters,
/// digits, `-` and `_`, at most 64 long (seed 003's `tenant_id` strings).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, example = "acme")]
pub struct TenantId(String);

impl TenantId {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(format!("ten_{}", next_ulid()))
    }

    pub fn parse(value: &str, field: &str) -> Result<Self, ValidationError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(ValidationError::new(
                field,
                "must be 1 to 64 letters, digits, `-` or `_`",
            ))
        }
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a.as_str().starts_with("msg_"));
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(MessageId::parse(a.as_str(), "id").unwrap(), a);
    }

    #[test]
    fn wrong_prefix_is_refused_naming_the_field() {
        let err = EndpointId::parse("msg_01J000000000000000000000", "endpoint_id").unwrap_err();
        assert_eq!(err.field, "endpoint_id");
        assert!(EndpointId::parse("ep_notaulid", "x").is_err());
    }

    #[test]
    fn tenant_ids_allow_chosen_names() {
        assert!(TenantId::parse("acme-corp_1", "id").is_ok());
        assert!(TenantId::parse("", "id").is_err());
        assert!(TenantId::parse("a b", "id").is_err());
        assert!(TenantId::parse(&"x".repeat(65), "id").is_err());
        assert!(TenantId::new().as_str().starts_with("ten_"));
    }
}
