//! herald's domain, with no I/O and no async runtime.
//!
//! Everything that is hard to get right and cheap to test lives here: prefixed ids,
//! the resources (tenants, endpoints, messages, deliveries, attempts), validation of
//! what callers send, event-filter matching, retry schedules, the classification of
//! an HTTP answer into success / retry / permanent failure, the signature schemes and
//! the canonical JSON body. The store, engine and adapters depend on this crate; it
//! depends on none of them.
//!
//! # Errors
//! Parsing outside input returns [`ValidationError`], which names the offending field;
//! the API turns it into a 422 with that field.

pub mod body;
pub mod delivery;
pub mod endpoint;
pub mod error;
pub mod filter;
pub mod headers;
pub mod ids;
pub mod message;
pub mod network;
pub mod outcome;
pub mod retry;
pub mod signing;
pub mod template;

pub use error::ValidationError;
pub use ids::{AttemptId, DeliveryId, EndpointId, MessageId, TenantId};
