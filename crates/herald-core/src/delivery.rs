//! Deliveries: one message on its way to one endpoint or ad-hoc URL, and the states
//! it moves through: `pending` → `delivering` → `succeeded` | `pending` (retry) |
//! `dead`; `cancelled` from `pending`; replay moves `dead` back to `pending`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;
use crate::signing::SignatureConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivering,
    Succeeded,
    Dead,
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Delivering,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pending" => DeliveryStatus::Pending,
            "delivering" => DeliveryStatus::Delivering,
            "succeeded" => DeliveryStatus::Succeeded,
            "dead" => DeliveryStatus::Dead,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the delivery still has work ahead of it.
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Delivering)
    }
}

/// Where an ad-hoc callback goes and how (seed 000: target_url, target_method,
/// hmac_secret), with the same retries and signing as an endpoint delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdHocTarget {
    pub url: String,
    pub method: String,
    pub signature: SignatureConfig,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default)]
    pub auth: crate::endpoint::TargetAuth,
    /// Total timeout; `None`: the configured default.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// `None`: herald's own.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// Summary of a message's deliveries for polling (seed 001): `pending` while any is
/// open, `succeeded` when all succeeded, else `failed`.
pub fn message_status(statuses: impl IntoIterator<Item = DeliveryStatus>) -> &'static str {
    let mut all_succeeded = true;
    for status in statuses {
        if status.is_open() {
            return "pending";
        }
        all_succeeded &= status == DeliveryStatus::Succeeded;
    }
    if all_succeeded {
        "succeeded"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn message_status_summarises_deliveries() {
        assert_eq!(message_status([Succeeded, Pending]), "pending");
        assert_eq!(message_status([Succeeded, Delivering]), "pending");
        assert_eq!(message_status([Succeeded, Succeeded]), "succeeded");
        assert_eq!(message_status([Succeeded, Dead]), "failed");
        assert_eq!(message_status([]), "succeeded");
        for (i, s) in DeliveryStatus::ALL.into_iter().enumerate() {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
            // A new status fails to compile here until it is placed in `ALL`.
            let place = match s {
                Pending => 0,
                Delivering => 1,
                Succeeded => 2,
                Dead => 3,
                Cancelled => 4,
            };
            assert_eq!(place, i);
        }
    }
}
