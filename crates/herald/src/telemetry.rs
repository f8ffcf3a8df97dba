//! Logs: one JSON object per line by default (timestamp, level, message and the
//! event's context fields), or a human format for a terminal.

use tracing_subscriber::EnvFilter;

/// Libraries whose own chatter stays at `warn` when the level is a plain one.
const QUIET: &[&str] = &[
    "sqlx",
    "lapin",
    "amq_protocol",
    "hyper",
    "h2",
    "rustls",
    "reqwest",
    "tower",
];

/// The filter for `level`: a plain level applies to herald, with its libraries
/// held at `warn`; a full filter (`herald_engine=debug,info`) is taken as written.
pub fn filter(level: &str) -> EnvFilter {
    let plain = ["trace", "debug", "info", "warn", "error"]
        .contains(&level.trim().to_ascii_lowercase().as_str());
    let directives = if plain {
        let quiet: Vec<String> = QUIET.iter().map(|c| format!("{c}=warn")).collect();
        format!("{level},{}", quiet.join(","))
    } else {
        level.to_string()
    };
    EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber; `format` is `json` or `pretty`.
pub fn init(level: &str, format: &str) {
    let filter = filter(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = if format == "pretty" {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
