use super::*;

fn create(json: &str) -> Result<Endpoint, ValidationError> {
    let spec: EndpointSpec = serde_json::from_str(json).unwrap();
    Endpoint::create(
        TenantId::parse("acme", "id").unwrap(),
        spec,
        &EndpointDefaults::default(),
        Utc::now(),
    )
}

#[test]
fn defaults_fill_what_is_left_out() {
    let e = create(r#"{"url":"https://example.com/hook"}"#).unwrap();
    assert_eq!(e.method, "POST");
    assert_eq!(e.event_types[0].as_str(), "*");
    assert_eq!(e.signature.scheme, SignatureScheme::StandardWebhooks);
    assert!(e.signature.keys[0].secret.starts_with("whsec_"));
    assert_eq!(e.connect_timeout_seconds, 10.0);
    assert_eq!(e.timeout_seconds, 30.0);
    assert_eq!(e.mode, DeliveryMode::Concurrent);
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (r#"{}"#, "url"),
        (r#"{"url":"ftp://example.com"}"#, "url"),
        (r#"{"url":"not a url"}"#, "url"),
        (r#"{"url":"https://user:secret@example.com/hook"}"#, "url"),
        (r#"{"url":"https://user@example.com/hook"}"#, "url"),
        (r#"{"url":"http://x.io","event_types":[]}"#, "event_types"),
        (r#"{"url":"http://x.io","method":"TRACE"}"#, "method"),
        (
            r#"{"url":"http://x.io","timeout_seconds":0}"#,
            "timeout_seconds",
        ),
        (
            r#"{"url":"http://x.io","headers":{"X-A":"b\r\nc"}}"#,
            "headers.X-A",
        ),
        (
            r#"{"url":"http://x.io","max_in_flight":0}"#,
            "max_in_flight",
        ),
        (
            r#"{"url":"http://x.io","retry_policy":{"max_retries":1000}}"#,
            "retry_policy.max_retries",
        ),
        (
            r#"{"url":"http://x.io","signature":{"scheme":"standard-webhooks","secret":"x"}}"#,
            "signature.secret",
        ),
        (
            r#"{"url":"http://x.io","auth":{"type":"bearer","token":""}}"#,
            "auth.token",
        ),
        (
            r#"{"url":"http://x.io","template":"{\"a\": {{x}"}"#,
            "template",
        ),
    ];
    for (json, field) in cases {
        assert_eq!(create(json).unwrap_err().field, field, "{json}");
    }
}

#[test]
fn patch_changes_only_what_it_names() {
    let mut e = create(r#"{"url":"https://example.com/hook","rate_limit_per_second":5}"#).unwrap();
    let secret = e.signature.keys[0].secret.clone();
    let patch: EndpointSpec =
        serde_json::from_str(r#"{"description":"x","rate_limit_per_second":null}"#).unwrap();
    e.apply(patch, Utc::now()).unwrap();
    assert_eq!(e.description, "x");
    assert_eq!(e.rate_limit_per_second, None);
    assert_eq!(e.signature.keys[0].secret, secret);
    let bad: EndpointSpec = serde_json::from_str(r#"{"url":"gopher://x"}"#).unwrap();
    assert!(e.apply(bad, Utc::now()).is_err());
    assert_eq!(e.url, "https://example.com/hook");
}

#[test]
fn a_short_total_timeout_brings_the_connect_timeout_down() {
    let e = create(r#"{"url":"http://x.io","timeout_seconds":2}"#).unwrap();
    assert_eq!((e.connect_timeout_seconds, e.timeout_seconds), (2.0, 2.0));
    let err = create(r#"{"url":"http://x.io","timeout_seconds":2,"connect_timeout_seconds":5}"#)
        .unwrap_err();
    assert_eq!(err.field, "connect_timeout_seconds");
}

#[test]
fn auth_headers_are_built() {
    let basic = TargetAuth::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    assert_eq!(basic.header().unwrap().1, "Basic dTpw");
    assert!(!basic.masked().to_string().contains("\"p\""));
}
