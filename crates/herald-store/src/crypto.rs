//! Encryption at rest: every stored endpoint configuration (signing secrets,
//! private keys, auth passwords, tokens and keys) and every ad-hoc callback target
//! (its HMAC secret) is sealed with AES-256-GCM under the master key before it
//! reaches the database, and opened when read. Nothing else in those records is
//! needed in the clear: the columns queries filter on (ids, URLs) sit beside them.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;

use crate::{StoreError, StoreResult};

const PREFIX: &str = "enc1:";

/// The 32-byte key that seals secrets at rest. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(bytes.into()))
    }

    /// The key in `path` (base64 of 32 bytes), created with mode 0600 when missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let text = B64.encode(bytes);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(text.as_bytes())?;
                        file.sync_all()?;
                        text
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read_to_string(path)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let bytes: [u8; 32] = B64
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "{} does not hold base64 of 32 bytes",
                    path.display()
                ))
            })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// `enc1:` and the base64 of a fresh nonce followed by the ciphertext.
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encrypts any input");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// The plaintext of [`seal`](Self::seal)'s output.
    pub fn open(&self, text: &str) -> StoreResult<String> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("sealed value: {why}"));
        let raw = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| corrupt("not sealed"))?;
        let bytes = B64.decode(raw).map_err(|_| corrupt("not base64"))?;
        if bytes.len() < 12 {
            return Err(corrupt("too short"));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| corrupt("does not open with this master key"))?;
        String::from_utf8(plain).map_err(|_| corrupt("not UTF-8"))
    }

    /// Serialises and seals.
    pub fn seal_json<T: serde::Serialize>(&self, value: &T) -> String {
        self.seal(&serde_json::to_string(value).expect("store records serialize"))
    }

    /// Opens and deserialises.
    pub fn open_json<T: serde::de::DeserializeOwned>(&self, text: &str) -> StoreResult<T> {
        serde_json::from_str(&self.open(text)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_and_hides_the_plaintext() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal("whsec_very-secret");
        assert!(!sealed.contains("very-secret"));
        assert_ne!(
            sealed,
            key.seal("whsec_very-secret"),
            "a fresh nonce each time"
        );
        assert_eq!(key.open(&sealed).unwrap(), "whsec_very-secret");
        assert!(MasterKey::from_bytes(&[8; 32]).open(&sealed).is_err());
        assert!(key.open("{\"plain\": true}").is_err());
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&first.seal("x")).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
