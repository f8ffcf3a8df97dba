//! Retry policies (seed 003's exponential form and the explicit schedules of seeds
//! 001, 002 and 004) and the arithmetic of the next delay.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Smallest delay or timeout herald accepts, in seconds (tests use short ones).
pub const MIN_SECONDS: f64 = 0.1;
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

/// How a delivery is retried after a retryable failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RetryPolicy {
    Exponential {
        max_retries: u32,
        initial_delay_seconds: f64,
        backoff_multiplier: f64,
        max_delay_seconds: f64,
        jitter: bool,
    },
    Schedule {
        delays_seconds: Vec<f64>,
    },
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::Exponential {
            max_retries: 5,
            initial_delay_seconds: 1.0,
            backoff_multiplier: 2.0,
            max_delay_seconds: 300.0,
            jitter: true,
        }
    }
}

/// The retry policy as a caller writes it: every field optional so one parse can tell
/// which form was meant and name the field that is wrong.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicySpec {
    pub max_retries: Option<u32>,
    pub initial_delay_seconds: Option<f64>,
    pub backoff_multiplier: Option<f64>,
    pub max_delay_seconds: Option<f64>,
    pub jitter: Option<bool>,
    pub delays_seconds: Option<Vec<f64>>,
}

fn seconds(value: f64, field: &str) -> Result<f64, ValidationError> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&value) {
        return Err(ValidationError::new(
            field,
            format!("must be between {MIN_SECONDS} and {MAX_SECONDS} seconds"),
        ));
    }
    Ok(value)
}

impl RetryPolicySpec {
    pub fn parse(&self) -> Result<RetryPolicy, ValidationError> {
        if let Some(delays) = &self.delays_seconds {
            let exponential_field = [
                (self.max_retries.is_some(), "max_retries"),
                (
                    self.initial_delay_seconds.is_some(),
                    "initial_delay_seconds",
                ),
                (self.backoff_multiplier.is_some(), "backoff_multiplier"),
                (self.max_delay_seconds.is_some(), "max_delay_seconds"),
                (self.jitter.is_some(), "jitter"),
            ]
            .into_iter()
            .find(|(set, _)| *set);
            if let Some((_, name)) = exponential_field {
                return Err(ValidationError::new(
                    name,
                    "cannot be combined with delays_seconds",
                ));
            }
            if delays.len() > 100 {
                return Err(ValidationError::new("delays_seconds", "at most 100 delays"));
            }
            let delays = delays
                .iter()
                .enumerate()
                .map(|(i, d)| seconds(*d, &format!("delays_seconds[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(RetryPolicy::Schedule {
                delays_seconds: delays,
            });
        }
        let RetryPolicy::Exponential {
            max_retries,
            initial_delay_seconds,
            backoff_multiplier,
            max_delay_seconds,
            jitter,
        } = RetryPolicy::default()
        else {
            unreachable!("the default policy is exponential")
        };
        let max_retries = self.max_retries.unwrap_or(max_retries);
        if max_retries > 100 {
            return Err(ValidationError::new("max_retries", "must be at most 100"));
        }
        let initial = seconds(
            self.initial_delay_seconds.unwrap_or(initial_delay_seconds),
            "initial_delay_seconds",
        )?;
        let max_delay = seconds(
            self.max_delay_seconds
                .unwrap_or(max_delay_seconds.max(initial)),
            "max_delay_seconds",
        )?;
        if max_delay < initial {
            return Err(ValidationError::new(
                "max_delay_seconds",
                "must be at least initial_delay_seconds",
            ));
        }
        let multiplier = self.backoff_multiplier.unwrap_or(backoff_multiplier);
        if !(1.0..=100.0).contains(&multiplier) {
            return Err(ValidationError::new(
                "backoff_multiplier",
                "must be between 1 and 100",
            ));
        }
        Ok(RetryPolicy::Exponential {
            max_retries,
            initial_delay_seconds: initial,
            backoff_multiplier: multiplier,
            max_delay_seconds: max_delay,
            jitter: self.jitter.unwrap_or(jitter),
        })
    }
}

impl From<&RetryPolicy> for RetryPolicySpec {
    fn from(policy: &RetryPolicy) -> Self {
        match policy {
            RetryPolicy::Exponential {
                max_retries,
                initial_delay_seconds,
                backoff_multiplier,
                max_delay_seconds,
                jitter,
            } => RetryPolicySpec {
                max_retries: Some(*max_retries),
                initial_delay_seconds: Some(*initial_delay_seconds),
                backoff_multiplier: Some(*backoff_multiplier),
                max_delay_seconds: Some(*max_delay_seconds),
                jitter: Some(*jitter),
                delays_seconds: None,
            },
            RetryPolicy::Schedule { delays_seconds } => RetryPolicySpec {
                delays_seconds: Some(delays_seconds.clone()),
                ..Default::default()
            },
        }
    }
}

impl RetryPolicy {
    /// How many retries follow the first attempt.
    pub fn max_retries(&self) -> u32 {
        match self {
            RetryPolicy::Exponential { max_retries, .. } => *max_retries,
            RetryPolicy::Schedule { delays_seconds } => delays_seconds.len() as u32,
        }
    }

    /// The delay before retry number `retry` (1 for the first retry), or `None` when
    /// the policy is exhausted. Jitter spreads a delay over [0.8, 1.2] of its value so
    /// that a crowd of failures does not come back at once.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Option<f64> {
        if retry == 0 || retry > self.max_retries() {
            return None;
        }
        match self {
            RetryPolicy::Schedule { delays_seconds } => {
                delays_seconds.get(retry as usize - 1).copied()
            }
            RetryPolicy::Exponential {
                initial_delay_seconds,
                backoff_multiplier,
                max_delay_seconds,
                jitter,
                ..
            } => {
                let exponent = (retry - 1).min(1000) as i32;
                let raw = initial_delay_seconds * backoff_multiplier.powi(exponent);
                let capped = raw.min(*max_delay_seconds);
                Some(if *jitter {
                    capped * rng.gen_range(0.8..=1.2)
                } else {
                    capped
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    fn spec(json: &str) -> Result<RetryPolicy, ValidationError> {
        serde_json::from_str::<RetryPolicySpec>(json)
            .unwrap()
            .parse()
    }

    #[test]
    fn exponential_delays_grow_and_cap() {
        let p = spec(r#"{"max_retries":5,"initial_delay_seconds":1,"backoff_multiplier":2,"max_delay_seconds":5,"jitter":false}"#).unwrap();
        let mut rng = StepRng::new(0, 1);
        let delays: Vec<_> = (1..=6).map(|n| p.delay(n, &mut rng)).collect();
        assert_eq!(
            delays,
            vec![Some(1.0), Some(2.0), Some(4.0), Some(5.0), Some(5.0), None]
        );
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let p = spec(r#"{"initial_delay_seconds":10,"max_delay_seconds":10}"#).unwrap();
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let d = p.delay(1, &mut rng).unwrap();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn schedules_of_the_seeds_are_followed() {
        let p = spec(r#"{"delays_seconds":[30,300,900,3600]}"#).unwrap();
        let mut rng = StepRng::new(0, 1);
        assert_eq!(p.max_retries(), 4);
        assert_eq!(p.delay(2, &mut rng), Some(300.0));
        assert_eq!(p.delay(5, &mut rng), None);
    }

    #[test]
    fn bad_policies_name_their_field() {
        assert_eq!(
            spec(r#"{"initial_delay_seconds":0.01}"#).unwrap_err().field,
            "initial_delay_seconds"
        );
        assert_eq!(
            spec(r#"{"delays_seconds":[1,-2]}"#).unwrap_err().field,
            "delays_seconds[1]"
        );
        assert_eq!(
            spec(r#"{"delays_seconds":[1],"max_retries":2}"#)
                .unwrap_err()
                .field,
            "max_retries"
        );
        assert!(serde_json::from_str::<RetryPolicySpec>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn stored_form_round_trips() {
        let p = RetryPolicy::default();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<RetryPolicy>(&text).unwrap(), p);
        let s = RetryPolicy::Schedule {
            delays_seconds: vec![10.0, 30.0, 90.0],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RetryPolicy>(&text).unwrap(), s);
    }
}
