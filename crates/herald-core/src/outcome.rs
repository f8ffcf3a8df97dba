//! What one HTTP try means (SPEC §3) and what happens next: the pure half of a
//! worker. 2xx succeeds; 3xx fails and is retried (never followed); 408 and 429 are
//! retried honouring `Retry-After`; other 4xx fail permanently; 5xx and every transport
//! error are retried.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// Why a try got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportError {
    Timeout,
    Connect,
    Dns,
    Tls,
    BlockedAddress,
    Request,
}

impl TransportError {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Connect => "connect",
            TransportError::Dns => "dns",
            TransportError::Tls => "tls",
            TransportError::BlockedAddress => "blocked_address",
            TransportError::Request => "request",
        }
    }
}

/// The raw result of one try, as the HTTP client saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum TryResult {
    Answered {
        status: u16,
        /// The `Retry-After` header, unparsed.
        retry_after: Option<String>,
    },
    Failed(TransportError),
}

/// What the try means for the delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Success,
    /// Worth another try; `retry_after` is the receiver's own hint, in seconds.
    Retry {
        retry_after: Option<f64>,
    },
    Permanent,
}

/// Classifies one try (SPEC §3). `now` reads HTTP-date `Retry-After` values.
pub fn classify(result: &TryResult, now: DateTime<Utc>) -> Verdict {
    match result {
        TryResult::Failed(TransportError::BlockedAddress) => Verdict::Permanent,
        TryResult::Failed(_) => Verdict::Retry { retry_after: None },
        TryResult::Answered {
            status,
            retry_after,
        } => match status {
            200..=299 => Verdict::Success,
            408 | 429 | 500..=599 => Verdict::Retry {
                retry_after: retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, now)),
            },
            300..=399 => Verdict::Retry { retry_after: None },
            _ => Verdict::Permanent,
        },
    }
}

/// `Retry-After` as seconds from `now`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<f64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds as f64);
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let delta = date.with_timezone(&Utc) - now;
    Some((delta.num_milliseconds().max(0) as f64) / 1000.0)
}

/// The next state of a delivery after a try.
#[derive(Clone, Debug, PartialEq)]
pub enum NextStep {
    Succeeded,
    /// Try again after this many seconds.
    RetryIn(f64),
    /// The policy is spent after a retryable failure.
    Exhausted,
    /// A failure no retry can fix.
    FailedPermanently,
}

/// Decides what follows a try. `attempts` counts the tries made so far, this one
/// included. A `Retry-After` longer than the policy's delay replaces it, capped at
/// `max_retry_after`; jitter never shortens it.
pub fn next_step(
    verdict: &Verdict,
    policy: &RetryPolicy,
    attempts: u32,
    max_retry_after: f64,
    rng: &mut impl Rng,
) -> NextStep {
    match verdict {
        Verdict::Success => NextStep::Succeeded,
        Verdict::Permanent => NextStep::FailedPermanently,
        Verdict::Retry { retry_after } => match policy.delay(attempts, rng) {
            None => NextStep::Exhausted,
            Some(delay) => {
                let hinted = retry_after.map(|h| h.min(max_retry_after)).unwrap_or(0.0);
                NextStep::RetryIn(delay.max(hinted))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    fn answered(status: u16, retry_after: Option<&str>) -> TryResult {
        TryResult::Answered {
            status,
            retry_after: retry_after.map(str::to_string),
        }
    }

    #[test]
    fn status_classes_follow_the_spec() {
        let now = Utc::now();
        assert_eq!(classify(&answered(200, None), now), Verdict::Success);
        assert_eq!(classify(&answered(204, None), now), Verdict::Success);
        for status in [301, 302, 307, 500, 502, 503, 408, 429] {
            assert!(
                matches!(
                    classify(&answered(status, None), now),
                    Verdict::Retry { .. }
                ),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 422] {
            assert_eq!(
                classify(&answered(status, None), now),
                Verdict::Permanent,
                "{status}"
            );
        }
        assert!(matches!(
            classify(&TryResult::Failed(TransportError::Timeout), now),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(120.0));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30.0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            classify(&answered(429, Some("7")), now),
            Verdict::Retry {
                retry_after: Some(7.0)
            }
        );
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        let policy = RetryPolicy::Schedule {
            delays_seconds: vec![1.0, 1.0],
        };
        let mut rng = StepRng::new(0, 1);
        let hint = |s: f64| Verdict::Retry {
            retry_after: Some(s),
        };
        assert_eq!(
            next_step(&hint(5.0), &policy, 1, 3600.0, &mut rng),
            NextStep::RetryIn(5.0)
        );
        assert_eq!(
            next_step(&hint(0.5), &policy, 1, 3600.0, &mut rng),
            NextStep::RetryIn(1.0)
        );
        assert_eq!(
            next_step(&hint(9e9), &policy, 1, 60.0, &mut rng),
            NextStep::RetryIn(60.0)
        );
        assert_eq!(
            next_step(&hint(5.0), &policy, 3, 3600.0, &mut rng),
            NextStep::Exhausted
        );
        assert_eq!(
            next_step(&Verdict::Permanent, &policy, 1, 3600.0, &mut rng),
            NextStep::FailedPermanently
        );
    }
}
