//! Event filters: which event types an endpoint subscribes to. A pattern is `*`
//! (everything), `prefix.*` (every type under `prefix.`), or an exact name (seed 003).

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// An event type a producer sends: `user.created`, `order.paid`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventType(String);

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
}

impl EventType {
    pub fn parse(value: &str, field: &str) -> Result<Self, ValidationError> {
        if value.is_empty() || value.len() > 256 || !value.bytes().all(is_name_char) {
            return Err(ValidationError::new(
                field,
                "must be 1 to 256 letters, digits or `._-:/`",
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One subscription pattern of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventPattern(String);

impl EventPattern {
    pub fn parse(value: &str, field: &str) -> Result<Self, ValidationError> {
        let name = value.strip_suffix(".*").unwrap_or(value);
        let ok = value == "*"
            || (!name.is_empty() && name.len() <= 256 && name.bytes().all(is_name_char));
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(ValidationError::new(
                field,
                "must be `*`, `prefix.*` or an event type name",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, event_type: &EventType) -> bool {
        let pattern = self.0.as_str();
        let event = event_type.as_str();
        if pattern == "*" {
            return true;
        }
        match pattern.strip_suffix('*') {
            // `user.*` matches `user.created` and `user.profile.updated`, not `user`.
            Some(prefix) => event.len() > prefix.len() && event.starts_with(prefix),
            None => pattern == event,
        }
    }
}

/// Parses an endpoint's list of patterns: absent means `["*"]`, empty is an error.
pub fn parse_patterns(
    values: Option<&[String]>,
    field: &str,
) -> Result<Vec<EventPattern>, ValidationError> {
    let Some(values) = values else {
        return Ok(vec![EventPattern("*".to_string())]);
    };
    if values.is_empty() {
        return Err(ValidationError::new(
            field,
            "must name at least one event type or pattern",
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| EventPattern::parse(v, &format!("{field}[{i}]")))
        .collect()
}

/// Whether any of `patterns` lets `event_type` through.
pub fn subscribed(patterns: &[EventPattern], event_type: &EventType) -> bool {
    patterns.iter().any(|p| p.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> EventType {
        EventType::parse(s, "event_type").unwrap()
    }

    fn pat(s: &str) -> EventPattern {
        EventPattern::parse(s, "event_types").unwrap()
    }

    #[test]
    fn star_matches_everything() {
        assert!(pat("*").matches(&ev("user.created")));
    }

    #[test]
    fn prefix_pattern_matches_below_the_prefix_only() {
        let p = pat("user.*");
        assert!(p.matches(&ev("user.created")));
        assert!(p.matches(&ev("user.profile.updated")));
        assert!(!p.matches(&ev("user")));
        assert!(!p.matches(&ev("users.created")));
        assert!(!p.matches(&ev("order.created")));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        assert!(pat("order.created").matches(&ev("order.created")));
        assert!(!pat("order.created").matches(&ev("order.created.v2")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "user.*.x", "a b", "**", ".*"] {
            assert!(EventPattern::parse(bad, "f").is_err(), "{bad:?}");
        }
        assert!(parse_patterns(Some(&[]), "event_types").is_err());
        assert_eq!(parse_patterns(None, "event_types").unwrap(), vec![pat("*")]);
    }
}
