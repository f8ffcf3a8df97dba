//! Every metric herald exports, declared in one place with its help text (seed
//! 000's names first, then herald's own). All exist from the first scrape, at 0.
//!
//! The `target` label of `callback_duration_seconds` is bounded: the first
//! [`MAX_TARGETS`] distinct targets (scheme://host:port) get their own series, the
//! rest share `target="other"`, so a tenant with many endpoints cannot blow up the
//! number of series.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Distinct `target` label values before the rest become `other`.
pub const MAX_TARGETS: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

pub struct Metrics {
    registry: Registry,
    /// Every HTTP try, `status="success"` for 2xx, `"error"` otherwise (seed 000).
    pub callback_total: Family<StatusLabel, Counter>,
    pub callback_duration: Family<TargetLabel, Histogram, fn() -> Histogram>,
    pub hmac_errors: Counter,
    pub amqp_reconnects: Counter,
    /// Broker messages by fate: accepted (committed), rejected (poison), requeued.
    pub amqp_messages: Family<OutcomeLabel, Counter>,
    /// HTTP tries by what they meant: success, retry, failed.
    pub attempts: Family<OutcomeLabel, Counter>,
    /// Deliveries that became dead letters.
    pub dead_letters: Counter,
    /// Messages committed, by the path they came in on.
    pub ingested: Family<PathLabel, Counter>,
    /// Management API requests by route template and status.
    pub api_requests: Family<RequestLabels, Counter>,
    /// Changes to tenants, endpoints and tokens heard from a shared store and applied.
    pub config_changes: Family<KindLabel, Counter>,
    pub pending: Gauge,
    pub in_flight: Gauge,
    /// How long the pending delivery due longest ago has waited.
    pub oldest_due_age: Gauge<f64, AtomicU64>,
    /// Deliveries the scheduler holds in memory (in flight included); a backlog
    /// past each endpoint's window waits in the store instead.
    pub scheduler_held: Gauge,
    targets: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let callback_total = Family::<StatusLabel, Counter>::default();
        for status in ["success", "error"] {
            let _ = callback_total.get_or_create(&StatusLabel {
                status: status.into(),
            });
        }
        let callback_duration =
            Family::<TargetLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let hmac_errors = Counter::default();
        let amqp_reconnects = Counter::default();
        let amqp_messages = Family::<OutcomeLabel, Counter>::default();
        for outcome in ["accepted", "rejected", "requeued"] {
            let _ = amqp_messages.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        registry.register(
            "callback",
            "HTTP tries made, by outcome (success: 2xx)",
            callback_total.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Duration of HTTP tries, by target",
            callback_duration.clone(),
        );
        registry.register(
            "hmac_errors",
            "Requests that could not be signed",
            hmac_errors.clone(),
        );
        registry.register(
            "amqp_reconnects",
            "Reconnections to the AMQP broker",
            amqp_reconnects.clone(),
        );
        registry.register(
            "herald_amqp_messages",
            "AMQP messages consumed, by fate",
            amqp_messages.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        for outcome in ["success", "retry", "failed"] {
            let _ = attempts.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        let ingested = Family::<PathLabel, Counter>::default();
        for path in ["http", "http_callback", "amqp_callback", "amqp_event"] {
            let _ = ingested.get_or_create(&PathLabel { path: path.into() });
        }
        let dead_letters = Counter::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        let config_changes = Family::<KindLabel, Counter>::default();
        for kind in ["tenant", "endpoint", "token", "any"] {
            let _ = config_changes.get_or_create(&KindLabel { kind: kind.into() });
        }
        let pending = Gauge::default();
        let in_flight = Gauge::default();
        let oldest_due_age = Gauge::<f64, AtomicU64>::default();
        let scheduler_held = Gauge::default();
        registry.register(
            "herald_attempts",
            "HTTP tries by outcome (success, retry, failed)",
            attempts.clone(),
        );
        registry.register(
            "herald_dead_letters",
            "Deliveries that became dead letters",
            dead_letters.clone(),
        );
        registry.register(
            "herald_messages_ingested",
            "Messages committed, by ingest path",
            ingested.clone(),
        );
        registry.register(
            "herald_api_requests",
            "Management API requests, by route and status",
            api_requests.clone(),
        );
        registry.register(
            "herald_config_changes",
            "Changes to tenants, endpoints and tokens heard from a shared store and applied, by kind (tenant, endpoint, token, any: possibly missed)",
            config_changes.clone(),
        );
        registry.register(
            "herald_deliveries_pending",
            "Deliveries waiting to be sent",
            pending.clone(),
        );
        registry.register(
            "herald_deliveries_in_flight",
            "Deliveries being sent",
            in_flight.clone(),
        );
        registry.register(
            "herald_oldest_due_delivery_age_seconds",
            "How long the pending delivery due longest ago has waited",
            oldest_due_age.clone(),
        );
        registry.register(
            "herald_scheduler_held_deliveries",
            "Deliveries the scheduler holds in memory, in flight included",
            scheduler_held.clone(),
        );
        Self {
            registry,
            callback_total,
            callback_duration,
            hmac_errors,
            amqp_reconnects,
            amqp_messages,
            attempts,
            dead_letters,
            ingested,
            api_requests,
            config_changes,
            pending,
            in_flight,
            oldest_due_age,
            scheduler_held,
            targets: Mutex::default(),
        }
    }

    /// Counts one HTTP try by what it meant.
    pub fn attempt(&self, outcome: &str) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts one committed message.
    pub fn ingested(&self, path: &str) {
        self.ingested
            .get_or_create(&PathLabel { path: path.into() })
            .inc();
    }

    /// Counts one API request.
    pub fn api_request(&self, method: &str, route: &str, status: u16) {
        let labels = RequestLabels {
            method: method.into(),
            route: route.into(),
            status: status.to_string(),
        };
        self.api_requests.get_or_create(&labels).inc();
    }

    /// Sets the gauges of open work from the store's view.
    pub fn set_open(&self, pending: u64, in_flight: u64, oldest_due_age_seconds: f64) {
        self.pending.set(pending as i64);
        self.in_flight.set(in_flight as i64);
        self.oldest_due_age.set(oldest_due_age_seconds);
    }

    /// Counts consumed broker messages settled the same way.
    pub fn amqp_messages(&self, outcome: &str, count: u64) {
        self.amqp_messages
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc_by(count);
    }

    /// Counts one HTTP try; `origin` is its URL's origin (scheme, host, port).
    pub fn observe_try(&self, origin: &str, success: bool, seconds: f64) {
        let status = if success { "success" } else { "error" };
        self.callback_total
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .inc();
        let target = {
            let mut seen = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(origin) {
                origin.to_string()
            } else if seen.len() < MAX_TARGETS {
                seen.insert(origin.to_string());
                origin.to_string()
            } else {
                "other".to_string()
            }
        };
        self.callback_duration
            .get_or_create(&TargetLabel { target })
            .observe(seconds);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_metrics_exist_from_the_start() {
        let text = Metrics::new().encode();
        for line in [
            "callback_total{status=\"success\"} 0",
            "callback_total{status=\"error\"} 0",
            "hmac_errors_total 0",
            "amqp_reconnects_total 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn target_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_TARGETS + 20) {
            m.observe_try(&format!("http://host{i}.example/x"), i % 2 == 0, 0.01);
        }
        let text = m.encode();
        assert!(text.contains("target=\"other\""));
        let series = text
            .lines()
            .filter(|l| l.starts_with("callback_duration_seconds_count"))
            .count();
        assert_eq!(series, MAX_TARGETS + 1);
        assert!(text.contains(&format!(
            "callback_total{{status=\"success\"}} {}",
            (MAX_TARGETS + 20) / 2
        )));
    }
}
