//! Signature schemes (SPEC §4). One interface, [`Signer`], that every scheme
//! implements; [`SignatureConfig::signer`] picks the implementation for an endpoint,
//! and [`verify`] checks a received request for receivers (`herald verify`). A
//! signature is always computed over the exact body bytes that are sent.
//!
//! Symmetric schemes use HMAC-SHA256. `standard-webhooks-ed25519` signs with
//! ed25519 and `rsa-sha256` with PKCS#1 v1.5, both through `ring` (constant time).
//! RSA key pairs are generated with the `rsa` crate, whose private-key operations
//! are not constant time (RUSTSEC-2023-0071): it is used for generation only,
//! never to sign.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

mod verify;

pub use verify::{verify, VerifyError, VerifyInput};

use crate::headers::validate_header;
use crate::ValidationError;

type HmacSha256 = Hmac<Sha256>;

/// Smallest RSA key herald accepts or makes.
const RSA_BITS: usize = 2048;

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
    /// standardwebhooks.com asymmetric: `webhook-signature: v1a,<base64>` (ed25519).
    StandardWebhooksEd25519,
    /// Base64 PKCS#1 v1.5 SHA-256 signature of the body in `X-Signature` (seed 002).
    RsaSha256,
}

impl SignatureScheme {
    pub fn default_header(self) -> &'static str {
        match self {
            SignatureScheme::HmacSha256Hex | SignatureScheme::RsaSha256 => "X-Signature",
            SignatureScheme::HmacSha256Prefixed => "X-Webhook-Signature",
            SignatureScheme::StandardWebhooks | SignatureScheme::StandardWebhooksEd25519 => {
                "webhook-signature"
            }
        }
    }

    /// Whether receivers verify with a public key rather than the shared secret.
    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            SignatureScheme::StandardWebhooksEd25519 | SignatureScheme::RsaSha256
        )
    }

    /// A fresh key in this scheme's format.
    pub fn generate_key(self) -> SigningKey {
        let mut rng = rand::thread_rng();
        match self {
            SignatureScheme::StandardWebhooks => {
                let mut key = [0u8; 24];
                rng.fill_bytes(&mut key);
                SigningKey::new(format!("whsec_{}", B64.encode(key)), None)
            }
            SignatureScheme::HmacSha256Hex | SignatureScheme::HmacSha256Prefixed => {
                let mut key = [0u8; 32];
                rng.fill_bytes(&mut key);
                SigningKey::new(hex::encode(key), None)
            }
            SignatureScheme::StandardWebhooksEd25519 => {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                    .expect("any 32 bytes are a seed");
                let public = format!(
                    "whpk_{}",
                    B64.encode(ring::signature::KeyPair::public_key(&pair).as_ref())
                );
                SigningKey::new(format!("whsk_{}", B64.encode(seed)), Some(public))
            }
            SignatureScheme::RsaSha256 => {
                use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
                let private =
                    rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).expect("RSA key generation");
                let pem = private
                    .to_pkcs8_pem(LineEnding::LF)
                    .expect("a new key encodes")
                    .to_string();
                let public = private
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("a public key encodes");
                SigningKey::new(pem, Some(public))
            }
        }
    }

    /// A caller-given secret (or private key) as a signing key.
    pub fn key_from(self, secret: String, field: &str) -> Result<SigningKey, ValidationError> {
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
                Ok(SigningKey::new(secret, None))
            }
            SignatureScheme::HmacSha256Hex | SignatureScheme::HmacSha256Prefixed => {
                if secret.is_empty() || secret.len() > 512 {
                    return Err(ValidationError::new(field, "must be 1 to 512 characters"));
                }
                Ok(SigningKey::new(secret, None))
            }
            SignatureScheme::StandardWebhooksEd25519 => {
                let pair = ed25519_pair(&secret).map_err(|_| {
                    ValidationError::new(
                        field,
                        "must be `whsk_` followed by the base64 of a 32-byte ed25519 seed",
                    )
                })?;
                let public = format!(
                    "whpk_{}",
                    B64.encode(ring::signature::KeyPair::public_key(&pair).as_ref())
                );
                Ok(SigningKey::new(secret, Some(public)))
            }
            SignatureScheme::RsaSha256 => {
                use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
                use rsa::traits::PublicKeyParts;
                let private = rsa::RsaPrivateKey::from_pkcs8_pem(&secret).map_err(|_| {
                    ValidationError::new(field, "must be an RSA private key in PKCS#8 PEM")
                })?;
                if private.size() * 8 < RSA_BITS {
                    return Err(ValidationError::new(
                        field,
                        "RSA keys must have 2048 bits or more",
                    ));
                }
                rsa_pair(&secret)
                    .map_err(|_| ValidationError::new(field, "the RSA key cannot sign"))?;
                let public = private
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("a public key encodes");
                Ok(SigningKey::new(secret, Some(public)))
            }
        }
    }
}

/// One signing key; `expires_at` is set on a rotated-out key during its grace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The shared secret, or the private key of an asymmetric scheme.
    pub secret: String,
    /// What receivers verify with, for asymmetric schemes: `whpk_…` or PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl SigningKey {
    fn new(secret: String, public_key: Option<String>) -> Self {
        Self {
            secret,
            public_key,
            expires_at: None,
        }
    }

    fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// How an endpoint's requests are signed. The first key is the current one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignatureConfig {
    pub scheme: SignatureScheme,
    /// Signature header for the HMAC hex, prefixed and RSA schemes.
    pub header: String,
    /// Timestamp header for `hmac-sha256-prefixed`.
    pub timestamp_header: String,
    pub keys: Vec<SigningKey>,
}

impl SignatureConfig {
    /// A config for `scheme`, with `secret` or a generated key; header names default
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
        let key = match secret {
            Some(s) => scheme.key_from(s, "signature.secret")?,
            None => scheme.generate_key(),
        };
        Ok(Self {
            scheme,
            header,
            timestamp_header,
            keys: vec![key],
        })
    }

    /// The key that signs new requests and that the API serves.
    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Keys valid at `now`: the current one, and rotated-out ones in their grace.
    pub fn valid_keys(&self, now: DateTime<Utc>) -> usize {
        self.keys.iter().filter(|k| k.valid_at(now)).count()
    }

    /// Makes a new current key (`secret`, or generated); the old current key keeps
    /// signing for `grace_seconds`, and keys whose grace has ended are dropped.
    pub fn rotate(
        &mut self,
        secret: Option<String>,
        grace_seconds: f64,
        now: DateTime<Utc>,
    ) -> Result<(), ValidationError> {
        if !(0.0..=30.0 * 86_400.0).contains(&grace_seconds) {
            return Err(ValidationError::new(
                "grace_seconds",
                "must be between 0 and 2592000",
            ));
        }
        let key = match secret {
            Some(s) => self.scheme.key_from(s, "secret")?,
            None => self.scheme.generate_key(),
        };
        let until = now + chrono::Duration::milliseconds((grace_seconds * 1000.0) as i64);
        self.keys.retain(|k| k.valid_at(now));
        for old in &mut self.keys {
            old.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
        }
        self.keys.retain(|k| k.valid_at(now));
        self.keys.insert(0, key);
        Ok(())
    }

    /// The signer for the keys still valid at `now`.
    pub fn signer(&self, now: DateTime<Utc>) -> Result<Box<dyn Signer>, SignError> {
        let secrets: Vec<&str> = self
            .keys
            .iter()
            .filter(|k| k.valid_at(now))
            .map(|k| k.secret.as_str())
            .collect();
        if secrets.is_empty() {
            return Err(SignError::NoKey);
        }
        let hmac_keys = || secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        Ok(match self.scheme {
            SignatureScheme::HmacSha256Hex => Box::new(HmacHex {
                header: self.header.clone(),
                keys: hmac_keys(),
            }),
            SignatureScheme::HmacSha256Prefixed => Box::new(HmacPrefixed {
                header: self.header.clone(),
                timestamp_header: self.timestamp_header.clone(),
                keys: hmac_keys(),
            }),
            SignatureScheme::StandardWebhooks => Box::new(StandardWebhooks {
                keys: secrets
                    .iter()
                    .map(|s| standard_webhooks_key(s))
                    .collect::<Result<_, _>>()?,
            }),
            SignatureScheme::StandardWebhooksEd25519 => Box::new(Ed25519 {
                keys: secrets
                    .iter()
                    .map(|s| ed25519_pair(s))
                    .collect::<Result<_, _>>()?,
            }),
            SignatureScheme::RsaSha256 => Box::new(Rsa {
                header: self.header.clone(),
                keys: secrets
                    .iter()
                    .map(|s| rsa_pair(s))
                    .collect::<Result<_, _>>()?,
                rng: ring::rand::SystemRandom::new(),
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
    #[error("signing failed")]
    Failed,
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
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError>;
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

fn ed25519_pair(secret: &str) -> Result<ring::signature::Ed25519KeyPair, SignError> {
    let bytes = secret
        .strip_prefix("whsk_")
        .and_then(|b| B64.decode(b).ok())
        .ok_or(SignError::BadKey("expected whsk_ and base64"))?;
    // The seed, or the seed followed by the public key.
    let seed = bytes
        .get(..32)
        .filter(|_| bytes.len() == 32 || bytes.len() == 64)
        .ok_or(SignError::BadKey("expected a 32-byte seed"))?;
    ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| SignError::BadKey("not an ed25519 seed"))
}

/// The DER inside a PEM block.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    B64.decode(body).ok()
}

fn rsa_pair(pem: &str) -> Result<ring::rsa::KeyPair, SignError> {
    let der = pem_der(pem).ok_or(SignError::BadKey("expected PEM"))?;
    ring::rsa::KeyPair::from_pkcs8(&der).map_err(|_| SignError::BadKey("not a PKCS#8 RSA key"))
}

struct HmacHex {
    header: String,
    keys: Vec<Vec<u8>>,
}

impl Signer for HmacHex {
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError> {
        let sigs: Vec<String> = self
            .keys
            .iter()
            .map(|k| hex::encode(hmac(k, &[input.body])))
            .collect();
        Ok(vec![(self.header.clone(), sigs.join(","))])
    }
}

struct HmacPrefixed {
    header: String,
    timestamp_header: String,
    keys: Vec<Vec<u8>>,
}

impl Signer for HmacPrefixed {
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError> {
        let sigs: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("sha256={}", hex::encode(hmac(k, &[input.body]))))
            .collect();
        Ok(vec![
            (self.header.clone(), sigs.join(",")),
            (self.timestamp_header.clone(), input.timestamp.to_string()),
        ])
    }
}

fn standard_headers(input: &SignInput<'_>, signatures: Vec<String>) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_string(), input.message_id.to_string()),
        ("webhook-timestamp".to_string(), input.timestamp.to_string()),
        ("webhook-signature".to_string(), signatures.join(" ")),
    ]
}

/// The bytes Standard Webhooks signs: `id.timestamp.body`.
fn standard_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
}

impl Signer for StandardWebhooks {
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError> {
        let content = standard_content(input.message_id, &input.timestamp.to_string(), input.body);
        let sigs = self
            .keys
            .iter()
            .map(|k| format!("v1,{}", B64.encode(hmac(k, &[&content]))))
            .collect();
        Ok(standard_headers(input, sigs))
    }
}

struct Ed25519 {
    keys: Vec<ring::signature::Ed25519KeyPair>,
}

impl Signer for Ed25519 {
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError> {
        let content = standard_content(input.message_id, &input.timestamp.to_string(), input.body);
        let sigs = self
            .keys
            .iter()
            .map(|k| format!("v1a,{}", B64.encode(k.sign(&content).as_ref())))
            .collect();
        Ok(standard_headers(input, sigs))
    }
}

struct Rsa {
    header: String,
    keys: Vec<ring::rsa::KeyPair>,
    rng: ring::rand::SystemRandom,
}

impl Signer for Rsa {
    fn sign(&self, input: &SignInput<'_>) -> Result<Vec<(String, String)>, SignError> {
        let mut sigs = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let mut signature = vec![0u8; key.public().modulus_len()];
            key.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &self.rng,
                input.body,
                &mut signature,
            )
            .map_err(|_| SignError::Failed)?;
            sigs.push(B64.encode(signature));
        }
        Ok(vec![(self.header.clone(), sigs.join(","))])
    }
}

#[cfg(test)]
mod tests;
