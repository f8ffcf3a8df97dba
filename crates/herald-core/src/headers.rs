//! Header names and values callers may set (endpoint headers, per-message headers):
//! a header name is an HTTP token and no value carries CR, LF or NUL, so nothing a
//! caller sends can split a request herald makes.

use std::collections::BTreeMap;

use crate::ValidationError;

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn validate_header(name: &str, value: &str, field: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > 256 || !name.bytes().all(is_token_char) {
        return Err(ValidationError::new(
            format!("{field}.{name}"),
            "header name must be an HTTP token (no spaces, CR or LF)",
        ));
    }
    if value.len() > 8192 || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ValidationError::new(
            format!("{field}.{name}"),
            "header value must not contain CR, LF or NUL and be at most 8192 bytes",
        ));
    }
    Ok(())
}

pub fn validate_headers(
    headers: &BTreeMap<String, String>,
    field: &str,
) -> Result<(), ValidationError> {
    if headers.len() > 64 {
        return Err(ValidationError::new(field, "at most 64 headers"));
    }
    headers
        .iter()
        .try_for_each(|(name, value)| validate_header(name, value, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_is_refused_in_names_and_values() {
        assert!(validate_header("X-Ok", "fine", "headers").is_ok());
        let err = validate_header("X-Bad", "a\r\nInjected: 1", "headers").unwrap_err();
        assert_eq!(err.field, "headers.X-Bad");
        assert!(validate_header("X-Bad\r\n", "v", "headers").is_err());
        assert!(validate_header("Bad Name", "v", "headers").is_err());
    }
}
