//! The body herald sends: the payload as compact JSON with object keys sorted (seed
//! 000), whatever order the producer used and whatever serde_json features another
//! crate switched on. The signature is computed over these exact bytes.

use serde_json::Value;

/// Compact JSON of `value` with every object's keys in byte order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is the JSON standard's; reuse it.
    out.push_str(&Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_000_vector_sorts_keys_compactly() {
        let payload: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(canonical_json(&payload), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn escapes_and_nesting_survive_a_round_trip() {
        let payload = serde_json::json!({"z": ["q\"uote", {"y": null, "x": 1.5}], "é": "\n"});
        let text = canonical_json(&payload);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, payload);
        assert!(text.starts_with(r#"{"z":"#));
    }
}
