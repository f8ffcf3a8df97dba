//! Per-lane pacing: the circuit breaker that pauses an endpoint after consecutive
//! failures (seed 003) and the token bucket of its rate limit. Both are plain state
//! machines over a clock passed in, so they are tested without waiting.

use herald_store::Millis;

/// Breaker settings (SPEC §10 defaults: 5 failures, 30 s, doubling up to 10 min).
#[derive(Clone, Debug)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_ms: Millis,
    pub max_open_ms: Millis,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_ms: 30_000,
            max_open_ms: 600_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Millis, open_for: Millis },
    HalfOpen { probing: bool, open_for: Millis },
}

/// What a finished try tells the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Success,
    Failure,
    /// Neither (a permanent 4xx proves the endpoint answers; an internal error proves
    /// nothing): counts as a success.
    Neutral,
    /// No request was sent after all (the claim was refused): changes nothing but
    /// frees the half-open probe slot.
    Skipped,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
}

/// Whether a lane may send now.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// Open: ask again at this time.
    WaitUntil(Millis),
    /// Half-open with its probe out: wait for the probe's answer.
    WaitForProbe,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: State::Closed { failures: 0 },
        }
    }
}

impl Breaker {
    pub fn check(&mut self, now: Millis) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Go,
            State::Open { until, open_for } if now >= until => {
                self.state = State::HalfOpen {
                    probing: false,
                    open_for,
                };
                Permit::Go
            }
            State::Open { until, .. } => Permit::WaitUntil(until),
            State::HalfOpen { probing: false, .. } => Permit::Go,
            State::HalfOpen { probing: true, .. } => Permit::WaitForProbe,
        }
    }

    /// A request is leaving (after `check` said go).
    pub fn dispatched(&mut self) {
        if let State::HalfOpen { probing, .. } = &mut self.state {
            *probing = true;
        }
    }

    pub fn record(&mut self, signal: Signal, now: Millis, config: &BreakerConfig) {
        if signal == Signal::Skipped {
            if let State::HalfOpen { probing, .. } = &mut self.state {
                *probing = false;
            }
            return;
        }
        let failed = signal == Signal::Failure;
        self.state = match (&self.state, failed) {
            (State::Closed { .. }, false) | (State::HalfOpen { .. }, false) => {
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= config.failure_threshold {
                    State::Open {
                        until: now + config.open_ms,
                        open_for: config.open_ms,
                    }
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { open_for, .. }, true) => {
                let open_for = (open_for * 2).min(config.max_open_ms);
                State::Open {
                    until: now + open_for,
                    open_for,
                }
            }
            // Answers of requests sent before the breaker opened change nothing.
            (State::Open { .. }, _) => self.state.clone(),
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// `closed`, `open` or `half_open`, as operators read it.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// A token bucket holding up to one second of requests.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_second: f64,
    tokens: f64,
    at: Millis,
}

impl TokenBucket {
    pub fn new(per_second: f64, now: Millis) -> Self {
        Self {
            per_second,
            tokens: per_second.max(1.0),
            at: now,
        }
    }

    /// Takes a token, or tells when the next one comes.
    pub fn take(&mut self, now: Millis) -> Result<(), Millis> {
        let capacity = self.per_second.max(1.0);
        let elapsed = (now - self.at).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.per_second).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / self.per_second * 1000.0).ceil() as Millis;
            Err(now + wait.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let config = BreakerConfig::default();
        let mut b = Breaker::default();
        for _ in 0..4 {
            b.record(Signal::Failure, 0, &config);
            assert_eq!(b.check(0), Permit::Go);
        }
        b.record(Signal::Failure, 0, &config);
        assert_eq!(b.check(1), Permit::WaitUntil(30_000));
        assert_eq!(b.check(30_000), Permit::Go);
        b.dispatched();
        assert_eq!(b.check(30_001), Permit::WaitForProbe);
        b.record(Signal::Failure, 31_000, &config);
        assert_eq!(
            b.check(31_001),
            Permit::WaitUntil(91_000),
            "open time doubles"
        );
        assert_eq!(b.check(91_000), Permit::Go);
        b.dispatched();
        b.record(Signal::Success, 91_100, &config);
        assert_eq!(b.check(91_101), Permit::Go);
        assert!(!b.is_open());
    }

    #[test]
    fn open_time_is_capped() {
        let config = BreakerConfig {
            failure_threshold: 1,
            open_ms: 400_000,
            max_open_ms: 600_000,
        };
        let mut b = Breaker::default();
        b.record(Signal::Failure, 0, &config);
        assert_eq!(b.check(400_000), Permit::Go);
        b.dispatched();
        b.record(Signal::Failure, 400_000, &config);
        assert_eq!(b.check(400_001), Permit::WaitUntil(1_000_000));
    }

    #[test]
    fn a_success_resets_the_count() {
        let config = BreakerConfig::default();
        let mut b = Breaker::default();
        for _ in 0..4 {
            b.record(Signal::Failure, 0, &config);
        }
        b.record(Signal::Neutral, 0, &config);
        for _ in 0..4 {
            b.record(Signal::Failure, 0, &config);
        }
        assert_eq!(b.check(0), Permit::Go);
    }

    #[test]
    fn a_skipped_probe_frees_the_slot() {
        let config = BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        };
        let mut b = Breaker::default();
        b.record(Signal::Failure, 0, &config);
        assert_eq!(b.check(30_000), Permit::Go);
        b.dispatched();
        b.record(Signal::Skipped, 30_001, &config);
        assert_eq!(b.check(30_002), Permit::Go);
    }

    #[test]
    fn bucket_paces_requests() {
        let mut bucket = TokenBucket::new(2.0, 0);
        assert!(bucket.take(0).is_ok());
        assert!(bucket.take(0).is_ok());
        assert_eq!(bucket.take(0), Err(500));
        assert!(bucket.take(500).is_ok());
        let mut slow = TokenBucket::new(0.5, 0);
        assert!(slow.take(0).is_ok());
        assert_eq!(slow.take(0), Err(2000));
    }
}
