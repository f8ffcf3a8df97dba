//! One typed, validated configuration: the commented defaults embedded from
//! `config.default.toml`, then a TOML file, then `HERALD_*` environment variables,
//! then flags. Validated once at start; a bad value stops start-up naming the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use herald_core::retry::{RetryPolicy, RetryPolicySpec};
use herald_engine::{BreakerConfig, EngineConfig, SchedulerConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const DEFAULTS: &str = include_str!("../config.default.toml");

/// A secret setting: never printed, never logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_seconds: f64,
    pub max_open_seconds: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub database_pool_size: u32,
    pub amqp_url: Option<Secret>,
    pub amqp_queue: String,
    pub amqp_prefetch: u16,
    pub amqp_dead_letter_exchange: Option<String>,
    pub admin_token: Option<Secret>,
    pub master_key: Option<Secret>,
    #[serde(deserialize_with = "list_or_csv")]
    pub allow_networks: Vec<String>,
    pub log_level: String,
    pub log_format: String,
    pub max_body_bytes: usize,
    pub client_header_timeout_seconds: f64,
    pub max_retry_after_seconds: f64,
    pub max_concurrent_requests: usize,
    pub shutdown_grace_seconds: f64,
    pub node_timeout_seconds: f64,
    pub lease_margin_seconds: f64,
    pub poll_interval_seconds: f64,
    pub retention_seconds: f64,
    pub attempt_retention_seconds: f64,
    pub janitor_interval_seconds: f64,
    pub connect_timeout_seconds: f64,
    pub timeout_seconds: f64,
    pub max_in_flight: u32,
    pub adhoc_max_in_flight: u32,
    pub lane_window: usize,
    pub retry_policy: RetryPolicySpec,
    pub circuit_breaker: BreakerSettings,
}

fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(l) => l,
        Either::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Settings given as flags; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// A setting that is wrong, named.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

fn bad(setting: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("`{setting}` {why}"))
}

/// Environment variables that are not settings.
const NOT_SETTINGS: &[&str] = &["config"];

impl Config {
    /// The embedded defaults alone, ignoring files and the environment (tests).
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the embedded defaults parse")
    }

    /// Loads defaults < `file` (or `HERALD_CONFIG`) < environment < `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        let env_file = std::env::var_os("HERALD_CONFIG").map(std::path::PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("HERALD_")
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                !NOT_SETTINGS.contains(&key.as_str()) && !key.starts_with("test_")
            })
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| {
            let name = e.path.join(".");
            let name = if name.is_empty() {
                e.kind.to_string()
            } else {
                format!("`{name}`: {}", e.kind)
            };
            ConfigError(name)
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let sqlite = self
            .database_url
            .strip_prefix("sqlite://")
            .is_some_and(|p| !p.is_empty());
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|p| self.database_url.starts_with(p));
        if !sqlite && !postgres {
            return Err(bad(
                "database_url",
                "must be sqlite://PATH or postgres://...",
            ));
        }
        if let Some(url) = &self.amqp_url {
            if !(url.expose().starts_with("amqp://") || url.expose().starts_with("amqps://")) {
                return Err(bad("amqp_url", "must be amqp://... or amqps://..."));
            }
        }
        if self.amqp_queue.is_empty() || self.amqp_queue.len() > 255 {
            return Err(bad("amqp_queue", "must be 1 to 255 characters"));
        }
        if self.amqp_prefetch == 0 {
            return Err(bad("amqp_prefetch", "must be at least 1"));
        }
        if !(2..=1000).contains(&self.database_pool_size) {
            return Err(bad("database_pool_size", "must be between 2 and 1000"));
        }
        if let Some(key) = &self.master_key {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.expose())
                .map_err(|_| bad("master_key", "must be base64"))?;
            if bytes.len() != 32 {
                return Err(bad("master_key", "must be base64 of exactly 32 bytes"));
            }
        }
        if matches!(&self.admin_token, Some(t) if t.expose().len() < 8) {
            return Err(bad("admin_token", "must be at least 8 characters"));
        }
        self.allow_networks()?;
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|e| bad("log_level", e))?;
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(bad("log_format", "must be json or pretty"));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        let positive = [
            ("max_retry_after_seconds", self.max_retry_after_seconds),
            ("shutdown_grace_seconds", self.shutdown_grace_seconds),
            (
                "client_header_timeout_seconds",
                self.client_header_timeout_seconds,
            ),
            ("node_timeout_seconds", self.node_timeout_seconds),
            ("lease_margin_seconds", self.lease_margin_seconds),
            ("poll_interval_seconds", self.poll_interval_seconds),
            ("retention_seconds", self.retention_seconds),
            ("attempt_retention_seconds", self.attempt_retention_seconds),
            ("janitor_interval_seconds", self.janitor_interval_seconds),
            (
                "circuit_breaker.open_seconds",
                self.circuit_breaker.open_seconds,
            ),
            (
                "circuit_breaker.max_open_seconds",
                self.circuit_breaker.max_open_seconds,
            ),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value >= 0.1) {
                return Err(bad(name, "must be at least 0.1"));
            }
        }
        if self.circuit_breaker.failure_threshold == 0 {
            return Err(bad(
                "circuit_breaker.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_requests == 0 || self.adhoc_max_in_flight == 0 {
            return Err(bad(
                "max_concurrent_requests",
                "and adhoc_max_in_flight must be at least 1",
            ));
        }
        if self.lane_window < 2 {
            return Err(bad("lane_window", "must be at least 2"));
        }
        self.retry_policy()?;
        self.endpoint_defaults()?;
        Ok(())
    }

    /// The networks the SSRF guard lets through.
    pub fn allow_networks(&self) -> Result<Vec<herald_core::network::Cidr>, ConfigError> {
        self.allow_networks
            .iter()
            .map(|net| {
                herald_core::network::Cidr::parse(net, "allow_networks")
                    .map_err(|e| bad("allow_networks", e.message))
            })
            .collect()
    }

    /// The master key that seals secrets at rest, when one is configured.
    pub fn master_key(&self) -> Result<Option<herald_store::crypto::MasterKey>, ConfigError> {
        let Some(key) = &self.master_key else {
            return Ok(None);
        };
        let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("master_key", "must be base64 of exactly 32 bytes"))?;
        Ok(Some(herald_store::crypto::MasterKey::from_bytes(&bytes)))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| bad("listen", "must be an address such as 127.0.0.1:8080"))
    }

    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        self.retry_policy
            .parse()
            .map_err(|e| bad(&format!("retry_policy.{}", e.field), e.message))
    }

    fn endpoint_defaults(&self) -> Result<herald_core::endpoint::EndpointDefaults, ConfigError> {
        let defaults = herald_core::endpoint::EndpointDefaults {
            connect_timeout_seconds: self.connect_timeout_seconds,
            timeout_seconds: self.timeout_seconds,
            max_in_flight: self.max_in_flight,
        };
        // The same rules as an endpoint's own fields.
        let probe = herald_core::endpoint::EndpointSpec {
            url: Some("http://localhost/".into()),
            ..Default::default()
        };
        let tenant = herald_core::TenantId::parse("config", "tenant").expect("a valid name");
        herald_core::endpoint::Endpoint::create(tenant, probe, &defaults, chrono::Utc::now())
            .map_err(|e| bad(&e.field, e.message))?;
        if !(1..=1000).contains(&self.max_in_flight) {
            return Err(bad("max_in_flight", "must be between 1 and 1000"));
        }
        if !(0.1..=300.0).contains(&self.connect_timeout_seconds) {
            return Err(bad(
                "connect_timeout_seconds",
                "must be between 0.1 and 300",
            ));
        }
        if !(0.1..=300.0).contains(&self.timeout_seconds) {
            return Err(bad("timeout_seconds", "must be between 0.1 and 300"));
        }
        Ok(defaults)
    }

    /// The engine's settings.
    pub fn engine(&self) -> Result<EngineConfig, ConfigError> {
        let ms = |s: f64| (s * 1000.0) as i64;
        Ok(EngineConfig {
            default_retry_policy: self.retry_policy()?,
            max_retry_after_seconds: self.max_retry_after_seconds,
            scheduler: SchedulerConfig {
                breaker: BreakerConfig {
                    failure_threshold: self.circuit_breaker.failure_threshold,
                    open_ms: ms(self.circuit_breaker.open_seconds),
                    max_open_ms: ms(self.circuit_breaker.max_open_seconds),
                },
                max_concurrent_requests: self.max_concurrent_requests,
                adhoc_max_in_flight: self.adhoc_max_in_flight,
                lane_window: self.lane_window,
            },
            adhoc_connect_timeout_seconds: self.connect_timeout_seconds,
            adhoc_timeout_seconds: self.timeout_seconds,
            shutdown_grace: Duration::from_secs_f64(self.shutdown_grace_seconds),
            endpoint_defaults: self.endpoint_defaults()?,
            lease_margin_seconds: self.lease_margin_seconds,
            node_timeout: Duration::from_secs_f64(self.node_timeout_seconds),
            poll_interval: Duration::from_secs_f64(self.poll_interval_seconds),
            retention: Duration::from_secs_f64(self.retention_seconds),
            attempt_retention: Duration::from_secs_f64(self.attempt_retention_seconds),
            janitor_interval: Duration::from_secs_f64(self.janitor_interval_seconds),
            allow_networks: self.allow_networks()?,
            ..EngineConfig::default()
        })
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let shown = Self {
            database_url: crate::redact_url(&self.database_url),
            ..self.clone()
        };
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}
