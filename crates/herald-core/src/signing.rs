//! Signature schemes (SPEC §4). One interface, [`Signer`], that every scheme
//! implements; [`SignatureConfig::signer`] picks the implementation for an endpoint.
//! A signature is always computed over the exact body bytes that are sent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::headers::validate_header;
use crate::ValidationError;

type HmacSha256 = Hmac<Sha256>;

/// The schemes herald signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// `X-Signature: <hex>` over the body (seeds 000, 001).
    HmacSha256Hex,
    /// `X-Webhook-Signature: sha256=<hex>` plus a timestamp header (seeds 003, 004).
    HmacSha256Prefixed,
    /// standardwebhooks.com: `webhook-signature: v1,<base64>` over `id.timestamp.body`.
    StandardWebhooks,
}

impl SignatureScheme {
    pub fn default_header(self) -> &'static str {
        match self {
            SignatureScheme::HmacSha256Hex => "X-Signature",
            SignatureScheme::HmacSha256Prefixed => "X-Webhook-Signature",
            SignatureScheme::StandardWebhooks => "webhook-signature",
        }
    }

    /// A fresh secret in this scheme's format.
    pub fn generate_secret(self) -> String {
        match self {
            SignatureScheme::StandardWebhooks => {
                let mut key = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut key);
                format!("whsec_{}", B64.encode(key))
            }
            _ => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                hex::encode(key)
            }
        }
    }

    /// Checks a caller-given secret.
    pub fn validate_secret(self, secret: &str, field: &str) -> Result<(), ValidationError> {
        match self {
            SignatureScheme::StandardWebhooks => {
                let bytes = secret
                    .strip_prefix("whsec_")
                    .and_then(|b| B64.decode(b).ok())
                    .ok_or_else(|| {
                        ValidationError::new(field, "must be `whsec_` followed by base64")
                    })?;
                if !(16..=64).contains(&bytes.len()) {
                    return Err(ValidationError::new(field, "key must be 16 to 64 bytes"));
                }
            }
            _ => {
                if secret.len() < 8 || secret.len() > 512 {
                    return Err(ValidationError::new(field, "must be 8 to 512 characters"));
                }
            }
        }
        Ok(())
    }
}

/// One signing secret; `expires_at` is set on a rotated-out secret during its grace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// How an endpoint's requests are signed. The first key is the current one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignatureConfig {
    pub scheme: SignatureScheme,
    /// Signature header for the HMAC schemes.
    pub header: String,
    /// Timestamp header for `hmac-sha256-prefixed`.
    pub timestamp_header: String,
    pub keys: Vec<SigningKey>,
}

impl SignatureConfig {
    /// A config for `scheme`, with `secret` or a generated one; header names default
    /// per scheme.
    pub fn new(
        scheme: SignatureScheme,
        header: Option<String>,
        timestamp_header: Option<String>,
        secret: Option<String>,
    ) -> Result<Self, ValidationError> {
        let header = header.unwrap_or_else(|| scheme.default_header().to_string());
        let timestamp_header = timestamp_header.unwrap_or_else(|| "X-Timestamp".to_string());
        validate_header(&header, "", "signature.header")?;
        validate_header(&timestamp_header, "", "signature.timestamp_header")?;
        let secret = match secret {
            Some(s) => {
                scheme.validate_secret(&s, "signature.secret")?;
                s
            }
            None => scheme.generate_secret(),
        };
        Ok(Self {
            scheme,
            header,
            timestamp_header,
            keys: vec![SigningKey {
                secret,
                expires_at: None,
            }],
        })
    }

    /// The signer for the keys still valid at `now`.
    pub fn signer(&self, now: DateTime<Utc>) -> Result<Box<dyn Signer>, SignError> {
        let secrets: Vec<&str> = self
            .keys
            .iter()
            .filter(|k| k.expires_at.is_none_or(|at| at > now))
            .map(|k| k.secret.as_str())
            .collect();
        if secrets.is_empty() {
            return Err(SignError::NoKey);
        }
        Ok(match self.scheme {
            SignatureScheme::HmacSha256Hex => Box::new(HmacHex {
                header: self.header.clone(),
                keys: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            }),
            SignatureScheme::HmacSha256Prefixed => Box::new(HmacPrefixed {
                header: self.header.clone(),
                timestamp_header: self.timestamp_header.clone(),
                keys: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            }),
            SignatureScheme::StandardWebhooks => Box::new(StandardWebhooks {
                keys: secrets
                    .iter()
                    .map(|s| standard_webhooks_key(s))
                    .collect::<Result<_, _>>()?,
            }),
        })
    }
}

/// Why a request could not be signed. Dead-letters the delivery with this reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("no signing key is valid")]
    NoKey,
    #[error("signing key is malformed: {0}")]
    BadKey(&'static str),
}

/// What a scheme needs to sign one request.
pub struct SignInput<'a> {
    pub message_id: &'a str,
    /// Unix seconds, also sent in the timestamp headers.
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// A signature scheme: the headers that carry the signature of one request.
pub trait Signer: Send + Sync {
    fn sign(&self, input: &SignInput<'_>) -> Vec<(String, String)>;
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, SignError> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| B64.decode(b).ok())
        .ok_or(SignError::BadKey("expected whsec_ and base64"))
}

struct HmacHex {
    header: String,
    keys: Vec<Vec<u8>>,
}

impl Signer for HmacHex {
    fn sign(&self, input: &SignInput<'_>) -> Vec<(String, String)> {
        let sigs: Vec<String> = self
            .keys
            .iter()
            .map(|k| hex::encode(hmac(k, &[input.body])))
            .collect();
        vec![(self.header.clone(), sigs.join(","))]
    }
}

struct HmacPrefixed {
    header: String,
    timestamp_header: String,
    keys: Vec<Vec<u8>>,
}

impl Signer for HmacPrefixed {
    fn sign(&self, input: &SignInput<'_>) -> Vec<(String, String)> {
        let sigs: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("sha256={}", hex::encode(hmac(k, &[input.body]))))
            .collect();
        vec![
            (self.header.clone(), sigs.join(",")),
            (self.timestamp_header.clone(), input.timestamp.to_string()),
        ]
    }
}

struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
}

impl Signer for StandardWebhooks {
    fn sign(&self, input: &SignInput<'_>) -> Vec<(String, String)> {
        let timestamp = input.timestamp.to_string();
        let sigs: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let mac = hmac(
                    k,
                    &[
                        input.message_id.as_bytes(),
                        b".",
                        timestamp.as_bytes(),
                        b".",
                        input.body,
                    ],
                );
                format!("v1,{}", B64.encode(mac))
            })
            .collect();
        vec![
            ("webhook-id".to_string(), input.message_id.to_string()),
            ("webhook-timestamp".to_string(), timestamp),
            ("webhook-signature".to_string(), sigs.join(" ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(config: &SignatureConfig, id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
        config.signer(Utc::now()).unwrap().sign(&SignInput {
            message_id: id,
            timestamp: ts,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn seed_000_hex_vector() {
        let config = SignatureConfig::new(
            SignatureScheme::HmacSha256Hex,
            None,
            None,
            Some("your-secret-key".into()),
        )
        .unwrap();
        let headers = sign(&config, "msg_x", 0, r#"{"a":{"c":3,"d":2},"b":1}"#);
        assert_eq!(
            headers,
            vec![(
                "X-Signature".to_string(),
                "224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa".to_string()
            )]
        );
    }

    #[test]
    fn standard_webhooks_specification_vector() {
        let config = SignatureConfig::new(
            SignatureScheme::StandardWebhooks,
            None,
            None,
            Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into()),
        )
        .unwrap();
        let headers = sign(
            &config,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert!(headers.contains(&(
            "webhook-signature".to_string(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()
        )));
        assert!(headers.contains(&("webhook-timestamp".to_string(), "1649367553".to_string())));
    }

    #[test]
    fn prefixed_scheme_uses_its_header_names() {
        let config = SignatureConfig::new(
            SignatureScheme::HmacSha256Prefixed,
            Some("X-IDP-Signature".into()),
            Some("X-IDP-Timestamp".into()),
            Some("your-secret-key".into()),
        )
        .unwrap();
        let headers = sign(&config, "m", 42, r#"{"a":{"c":3,"d":2},"b":1}"#);
        assert_eq!(headers[0].0, "X-IDP-Signature");
        assert_eq!(
            headers[0].1,
            "sha256=224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa"
        );
        assert_eq!(
            headers[1],
            ("X-IDP-Timestamp".to_string(), "42".to_string())
        );
    }

    #[test]
    fn generated_secrets_have_the_scheme_format() {
        let s = SignatureScheme::StandardWebhooks.generate_secret();
        assert!(SignatureScheme::StandardWebhooks
            .validate_secret(&s, "secret")
            .is_ok());
        assert!(SignatureScheme::StandardWebhooks
            .validate_secret("nope", "secret")
            .is_err());
    }

    #[test]
    fn expired_keys_stop_signing() {
        let mut config = SignatureConfig::new(
            SignatureScheme::HmacSha256Hex,
            None,
            None,
            Some("secret-one".into()),
        )
        .unwrap();
        config.keys.push(SigningKey {
            secret: "secret-two".into(),
            expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
        });
        let headers = sign(&config, "m", 0, "{}");
        assert!(!headers[0].1.contains(','));
    }
}
