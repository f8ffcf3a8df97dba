//! Body templates (seed 004, SPEC §5): JSON text with `{{...}}` placeholders.
//!
//! A placeholder inside a JSON string is filled with its value string-escaped (a
//! string's characters, or any other value's compact JSON), so it can never close
//! the string it sits in; a placeholder standing alone is filled with the value's
//! raw JSON. A template is checked when the endpoint is saved: filled with stand-in
//! values it must be valid JSON. Rendering then always yields valid JSON, or fails
//! with a reason (a missing field) that dead-letters the delivery.

use serde_json::Value;

use crate::body::canonical_json;
use crate::ValidationError;

const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// What a placeholder names.
#[derive(Clone, Debug, PartialEq)]
enum Var {
    MessageId,
    EventType,
    TenantId,
    Timestamp,
    /// A path into the payload; empty for the whole payload.
    Payload(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Var {
        var: Var,
        name: String,
        quoted: bool,
    },
}

/// A parsed, checked template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a template can use.
pub struct RenderContext<'a> {
    pub message_id: &'a str,
    pub event_type: &'a str,
    pub tenant_id: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    pub payload: &'a Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template field `{0}` is not in the payload")]
    Missing(String),
    #[error("rendered body is not valid JSON: {0}")]
    Invalid(String),
}

fn parse_var(name: &str) -> Option<Var> {
    let valid = !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !valid {
        return None;
    }
    Some(match name {
        "message_id" => Var::MessageId,
        "event_type" => Var::EventType,
        "tenant_id" => Var::TenantId,
        "timestamp" => Var::Timestamp,
        "payload" => Var::Payload(Vec::new()),
        _ => match name.strip_prefix("payload.") {
            Some(path) => Var::Payload(path.split('.').map(String::from).collect()),
            None => Var::Payload(name.split('.').map(String::from).collect()),
        },
    })
}

/// A string's characters as they go inside a JSON string literal.
fn escape(text: &str) -> String {
    let quoted = Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

impl Template {
    /// Parses and checks a template; `field` names it in errors.
    pub fn parse(source: &str, field: &str) -> Result<Self, ValidationError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(ValidationError::new(field, "must be at most 64 KiB"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let (mut in_string, mut escaped) = (false, false);
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") {
                let end = rest
                    .find("}}")
                    .ok_or_else(|| ValidationError::new(field, "has a `{{` without its `}}`"))?;
                let name = rest[2..end].trim();
                let var = parse_var(name).ok_or_else(|| {
                    ValidationError::new(field, format!("has a bad placeholder `{{{{{name}}}}}`"))
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var {
                    var,
                    name: name.to_string(),
                    quoted: in_string,
                });
                rest = &rest[end + 2..];
                continue;
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = Self { parts };
        let stand_in =
            template.fill(|_, quoted| Ok(if quoted { String::new() } else { "null".into() }))?;
        serde_json::from_str::<Value>(&stand_in).map_err(|e| {
            ValidationError::new(
                field,
                format!("is not valid JSON once its placeholders are filled: {e}"),
            )
        })?;
        Ok(template)
    }

    fn fill<E>(
        &self,
        mut value: impl FnMut(&Part, bool) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var { quoted, .. } => out.push_str(&value(part, *quoted)?),
            }
        }
        Ok(out)
    }

    /// The body for one message.
    pub fn render(&self, ctx: &RenderContext<'_>) -> Result<String, RenderError> {
        let out = self.fill(|part, quoted| {
            let Part::Var { var, name, .. } = part else {
                unreachable!("fill passes placeholders")
            };
            let value = match var {
                Var::MessageId => Value::String(ctx.message_id.into()),
                Var::EventType => Value::String(ctx.event_type.into()),
                Var::TenantId => Value::String(ctx.tenant_id.into()),
                Var::Timestamp => Value::from(ctx.timestamp),
                Var::Payload(path) => {
                    let mut at = ctx.payload;
                    for key in path {
                        at = match at {
                            Value::Object(map) => map.get(key),
                            Value::Array(items) => {
                                key.parse::<usize>().ok().and_then(|i| items.get(i))
                            }
                            _ => None,
                        }
                        .ok_or_else(|| RenderError::Missing(name.clone()))?;
                    }
                    at.clone()
                }
            };
            Ok(match (&value, quoted) {
                (Value::String(s), true) => escape(s),
                (other, true) => escape(&canonical_json(other)),
                (other, false) => canonical_json(other),
            })
        })?;
        serde_json::from_str::<Value>(&out).map_err(|e| RenderError::Invalid(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ctx(payload: &Value) -> RenderContext<'_> {
        RenderContext {
            message_id: "msg_1",
            event_type: "job.done",
            tenant_id: "acme",
            timestamp: 1_700_000_000,
            payload,
        }
    }

    #[test]
    fn seed_004_style_template_renders() {
        let t = Template::parse(
            r#"{"id":"{{message_id}}","type":"{{event_type}}","at":{{timestamp}},"result":{{payload.result_json}},"note":"job {{job_id}} done","all":{{payload}}}"#,
            "template",
        )
        .unwrap();
        let payload = json!({"job_id": 42, "result_json": {"ok": true}});
        let body: Value = serde_json::from_str(&t.render(&ctx(&payload)).unwrap()).unwrap();
        assert_eq!(body["id"], "msg_1");
        assert_eq!(body["at"], 1_700_000_000);
        assert_eq!(body["result"], json!({"ok": true}));
        assert_eq!(body["note"], "job 42 done");
        assert_eq!(body["all"], payload);
    }

    #[test]
    fn bad_templates_are_refused_naming_the_problem() {
        for (bad, says) in [
            (r#"{"a": {{x}"#, "without its"),
            (r#"{"a": {{ bad name }}}"#, "bad placeholder"),
            (r#"{"a": 1{{x}}}"#, "not valid JSON"),
            (r#"{"a": "unterminated}"#, "not valid JSON"),
            ("not json", "not valid JSON"),
        ] {
            let err = Template::parse(bad, "template").unwrap_err();
            assert_eq!(err.field, "template");
            assert!(err.message.contains(says), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn a_missing_field_fails_the_render() {
        let t = Template::parse(r#"{"x":{{payload.nope}}}"#, "template").unwrap();
        assert_eq!(
            t.render(&ctx(&json!({}))),
            Err(RenderError::Missing("payload.nope".into()))
        );
    }

    #[test]
    fn braces_inside_inserted_values_stay_values() {
        let t = Template::parse(r#"{"s":"{{v}}","r":{{v}}}"#, "template").unwrap();
        let payload = json!({"v": "{{message_id}}\"},\"x\":{\""});
        let body: Value = serde_json::from_str(&t.render(&ctx(&payload)).unwrap()).unwrap();
        assert_eq!(body["s"], payload["v"]);
        assert_eq!(body["r"], payload["v"]);
        assert_eq!(body.as_object().unwrap().len(), 2);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
            "[\"\\\\{}\n\t\u{0}-\u{1f}é😀]*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn rendering_never_yields_invalid_json_nor_lets_a_value_escape(value in json_value(), text in ".*") {
            let t = Template::parse(r#"{"quoted":"<{{payload.v}}>","raw":{{payload.v}},"text":"{{payload.t}}","n":[{{v}},"{{t}}"]}"#, "template").unwrap();
            let payload = json!({"v": value, "t": text});
            let rendered = t.render(&ctx(&payload)).unwrap();
            let body: Value = serde_json::from_str(&rendered).unwrap();
            let as_text = match &value { Value::String(s) => s.clone(), other => canonical_json(other) };
            prop_assert_eq!(&body["quoted"], &Value::String(format!("<{as_text}>")));
            prop_assert_eq!(&body["raw"], &value);
            prop_assert_eq!(&body["text"], &Value::String(text.clone()));
            prop_assert_eq!(&body["n"], &json!([value, text]));
            prop_assert_eq!(body.as_object().unwrap().len(), 4);
        }
    }
}
