//! Checking a received request: what receivers (and `herald verify`) do with the
//! headers and body herald sent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::Mac;

use super::*;

/// Why a received request does not verify.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("header `{0}` is missing")]
    MissingHeader(String),
    #[error("timestamp `{0}` is not unix seconds")]
    BadTimestamp(String),
    #[error("timestamp is {0} s away from now, more than the tolerance")]
    OutsideTolerance(i64),
    #[error("the key is malformed: {0}")]
    BadKey(String),
    #[error("no signature matches")]
    Mismatch,
}

/// What a receiver checks a request against.
pub struct VerifyInput<'a> {
    pub scheme: SignatureScheme,
    /// The shared secret, or the public key of an asymmetric scheme.
    pub key: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// Signature header of the hex, prefixed and RSA schemes (default per scheme).
    pub header: Option<&'a str>,
    /// Timestamp header of the prefixed scheme (default `X-Timestamp`).
    pub timestamp_header: Option<&'a str>,
    /// Unix seconds now, and how far a timestamp may be from it.
    pub now: i64,
    pub tolerance_seconds: i64,
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Result<&'a str, VerifyError> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| VerifyError::MissingHeader(name.to_string()))
}

fn check_timestamp(value: &str, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    let ts: i64 = value
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(value.to_string()))?;
    if (now - ts).abs() > tolerance {
        return Err(VerifyError::OutsideTolerance(now - ts));
    }
    Ok(())
}

fn any(candidates: impl Iterator<Item = bool>) -> Result<(), VerifyError> {
    let mut matched = false;
    for ok in candidates {
        matched |= ok;
    }
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Checks a received request's signature (and timestamp, for timestamped schemes).
pub fn verify(input: &VerifyInput<'_>) -> Result<(), VerifyError> {
    let header = input.header.unwrap_or(input.scheme.default_header());
    match input.scheme {
        SignatureScheme::HmacSha256Hex => {
            let value = find(input.headers, header)?;
            let key = input.key.as_bytes();
            any(value.split(',').map(|sig| {
                let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
                mac.update(input.body);
                hex::decode(sig.trim()).is_ok_and(|bytes| mac.verify_slice(&bytes).is_ok())
            }))
        }
        SignatureScheme::HmacSha256Prefixed => {
            check_timestamp(
                find(
                    input.headers,
                    input.timestamp_header.unwrap_or("X-Timestamp"),
                )?,
                input.now,
                input.tolerance_seconds,
            )?;
            let value = find(input.headers, header)?;
            any(value.split(',').map(|sig| {
                let mut mac =
                    HmacSha256::new_from_slice(input.key.as_bytes()).expect("any key length");
                mac.update(input.body);
                sig.trim()
                    .strip_prefix("sha256=")
                    .and_then(|h| hex::decode(h).ok())
                    .is_some_and(|bytes| mac.verify_slice(&bytes).is_ok())
            }))
        }
        SignatureScheme::StandardWebhooks | SignatureScheme::StandardWebhooksEd25519 => {
            let id = find(input.headers, "webhook-id")?;
            let timestamp = find(input.headers, "webhook-timestamp")?;
            check_timestamp(timestamp, input.now, input.tolerance_seconds)?;
            let signatures = find(input.headers, "webhook-signature")?;
            let content = standard_content(id, timestamp, input.body);
            if input.scheme == SignatureScheme::StandardWebhooks {
                let key = standard_webhooks_key(input.key)
                    .map_err(|e| VerifyError::BadKey(e.to_string()))?;
                any(signatures.split(' ').map(|sig| {
                    let mut mac = HmacSha256::new_from_slice(&key).expect("any key length");
                    mac.update(&content);
                    sig.strip_prefix("v1,")
                        .and_then(|b| B64.decode(b).ok())
                        .is_some_and(|bytes| mac.verify_slice(&bytes).is_ok())
                }))
            } else {
                let public = input
                    .key
                    .strip_prefix("whpk_")
                    .and_then(|b| B64.decode(b).ok())
                    .ok_or_else(|| VerifyError::BadKey("expected whpk_ and base64".into()))?;
                let key =
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
                any(signatures.split(' ').map(|sig| {
                    sig.strip_prefix("v1a,")
                        .and_then(|b| B64.decode(b).ok())
                        .is_some_and(|bytes| key.verify(&content, &bytes).is_ok())
                }))
            }
        }
        SignatureScheme::RsaSha256 => {
            use rsa::pkcs1::EncodeRsaPublicKey;
            use rsa::pkcs8::DecodePublicKey;
            let public = rsa::RsaPublicKey::from_public_key_pem(input.key).map_err(|_| {
                VerifyError::BadKey("expected a PEM public key (SubjectPublicKeyInfo)".into())
            })?;
            let der = public
                .to_pkcs1_der()
                .map_err(|e| VerifyError::BadKey(e.to_string()))?;
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                der.as_bytes().to_vec(),
            );
            let value = find(input.headers, header)?;
            any(value.split(',').map(|sig| {
                B64.decode(sig.trim())
                    .is_ok_and(|bytes| key.verify(input.body, &bytes).is_ok())
            }))
        }
    }
}
