//! Logs: one JSON object per line by default (timestamp, level, message and the
//! event's context fields), or a human format for a terminal.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `format` is `json` or `pretty`.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
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
