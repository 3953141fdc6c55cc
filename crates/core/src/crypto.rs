//! Sealing small secrets for storage in the database (provider credentials, webhook signing
//! secrets): XChaCha20-Poly1305 with a random 192-bit nonce, and the caller's *context* (what
//! the value is and whose: `provider_accounts:pacc_01h…:credentials`) as associated data, so
//! a sealed value copied into another row or project does not open.
//!
//! A sealed value reads `sb1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`: `sb1` names
//! the scheme, the key id (8 hex digits of a digest of the key) says which key sealed it.
//!
//! ## Keys and rotation
//! The key is `SWITCHBOARD_SECRET_KEY` (32 bytes, base64 or hex); when unset, one is
//! generated on first start and kept in the `settings` table, so every node of a cluster
//! shares it (like the JWT secret). To rotate, set the new key as `SWITCHBOARD_SECRET_KEY`
//! and the old one in `SWITCHBOARD_SECRET_KEY_PREVIOUS` (a comma-separated list): new values
//! are sealed with the new key, old ones still open with theirs. A generated key stays
//! readable after a key is configured. [`Keyring::is_current`] tells which values still use
//! an old key; a later `switchboard secrets rotate` opens each of those and seals it again
//! (in one transaction per row), after which the old key can be dropped from the list.

use crate::config::Config;
use crate::db::Db;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The scheme tag every sealed value starts with.
const SCHEME: &str = "sb1";
/// Bytes of the random nonce.
const NONCE_LEN: usize = 24;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// The `settings` row holding the generated key.
pub const SETTING: &str = "secret_key";

/// A 256-bit sealing key (zeroed when the last copy goes).
#[derive(Clone)]
pub struct Key {
    bytes: Arc<SecretBox<[u8; KEY_LEN]>>,
    id: String,
}

/// Only the id: the key itself never reaches a log.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes.expose_secret() == other.bytes.expose_secret()
    }
}

impl Key {
    fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        let mut h = Sha256::new();
        h.update(b"switchboard secret key id\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..4]);
        Key {
            bytes: Arc::new(SecretBox::new(Box::new(bytes))),
            id,
        }
    }

    /// A new random key.
    pub fn generate() -> Key {
        let mut bytes = [0u8; KEY_LEN];
        rand::thread_rng().fill_bytes(&mut bytes);
        Key::from_bytes(bytes)
    }

    /// Reads a key written as base64 (standard or URL-safe, padded or not) or hex: 32 bytes
    /// either way (`openssl rand -base64 32` makes one).
    pub fn parse(s: &str) -> Result<Key, String> {
        let s = s.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let decoded = if s.len() == 2 * KEY_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).ok()
        } else {
            engines.iter().find_map(|e| e.decode(s).ok())
        };
        decoded
            .and_then(|d| <[u8; KEY_LEN]>::try_from(d.as_slice()).ok())
            .map(Key::from_bytes)
            .ok_or_else(|| {
                format!(
                    "must be {KEY_LEN} bytes written as base64 or hex (`openssl rand -base64 32` \
                     makes one)"
                )
            })
    }

    /// The key as URL-safe base64 (how a generated key is stored).
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes.expose_secret())
    }

    /// Its id, as sealed values name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.expose_secret().into())
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Not of the form `sb1.<key id>.<base64>`.
    #[error("not a sealed value")]
    Malformed,
    /// Sealed with a key this node does not have (set it in `SWITCHBOARD_SECRET_KEY_PREVIOUS`).
    #[error("sealed with key {0}, which is neither SWITCHBOARD_SECRET_KEY nor in SWITCHBOARD_SECRET_KEY_PREVIOUS")]
    UnknownKey(String),
    /// The value, or its context, was altered (or it belongs to another context).
    #[error("the sealed value does not verify: altered, or sealed for another context")]
    Forged,
    /// The plaintext is not UTF-8 (it was not sealed by [`Keyring::seal`]).
    #[error("the opened value is not text")]
    NotText,
    /// The plaintext was too large to seal.
    #[error("the value is too large to seal")]
    TooLarge,
}

/// The key new values are sealed with and the older ones that still open values.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// A keyring sealing with `current` and opening with it or any of `previous`.
    pub fn new(current: Key, previous: Vec<Key>) -> Keyring {
        let previous = previous.into_iter().filter(|k| *k != current).collect();
        Keyring { current, previous }
    }

    /// The node's keyring: `SWITCHBOARD_SECRET_KEY`, or the key generated once and kept in
    /// `settings` (created now if this is the cluster's first start); the previous keys, and
    /// a generated key that a configured one replaced, open old values.
    pub async fn load(db: &Db, config: &Config) -> anyhow::Result<Keyring> {
        use anyhow::Context;
        let stored = |value: String| {
            Key::parse(&value)
                .map_err(|e| anyhow::anyhow!("settings `{SETTING}` in the database {e}"))
        };
        let mut previous = config.secret_key_previous.clone();
        let current = match &config.secret_key {
            Some(key) => {
                let generated = crate::settings::get(db, SETTING)
                    .await
                    .context("cannot read the stored secret key")?;
                if let Some(value) = generated {
                    previous.push(stored(value)?);
                }
                key.clone()
            }
            None => stored(
                crate::settings::get_or_create(db, SETTING, || Key::generate().encode())
                    .await
                    .context("cannot create the secret key")?,
            )?,
        };
        Ok(Keyring::new(current, previous))
    }

    /// Seals `plaintext` for `context` with the current key.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::TooLarge)?;
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        Ok(format!(
            "{SCHEME}.{}.{}",
            self.current.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
        ))
    }

    /// Opens a value [`Keyring::seal`] made for the same `context`, with whichever key of
    /// the ring sealed it.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let (id, payload) = parse(sealed)?;
        let mut known = false;
        for key in std::iter::once(&self.current).chain(&self.previous) {
            if key.id != id {
                continue;
            }
            known = true;
            let (nonce, ciphertext) = payload.split_at(NONCE_LEN);
            let opened = key.cipher().decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            );
            if let Ok(plain) = opened {
                return String::from_utf8(plain)
                    .map(SecretString::from)
                    .map_err(|_| CryptoError::NotText);
            }
        }
        Err(if known {
            CryptoError::Forged
        } else {
            CryptoError::UnknownKey(id.to_owned())
        })
    }

    /// Whether `sealed` uses the current key (false: re-seal it when convenient).
    pub fn is_current(&self, sealed: &str) -> bool {
        parse(sealed).is_ok_and(|(id, _)| id == self.current.id)
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }
}

/// `sb1.<id>.<payload>` → the key id and the decoded payload (nonce and sealed bytes).
fn parse(sealed: &str) -> Result<(&str, Vec<u8>), CryptoError> {
    let mut parts = sealed.trim().splitn(3, '.');
    let (Some(SCHEME), Some(id), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CryptoError::Malformed);
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| CryptoError::Malformed)?;
    // A nonce and at least the 16-byte tag.
    if payload.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    Ok((id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "provider_accounts:pacc_1:credentials";

    #[test]
    fn sealed_values_round_trip_and_differ_each_time() {
        let ring = Keyring::new(Key::generate(), Vec::new());
        let a = ring.seal("token-123", CONTEXT).unwrap();
        let b = ring.seal("token-123", CONTEXT).unwrap();
        assert_ne!(a, b, "a fresh nonce every time");
        assert!(a.starts_with(&format!("sb1.{}.", ring.current_id())), "{a}");
        assert!(!a.contains("token"), "{a}");
        assert_eq!(ring.open(&a, CONTEXT).unwrap().expose_secret(), "token-123");
        assert_eq!(ring.open(&b, CONTEXT).unwrap().expose_secret(), "token-123");
        assert_eq!(
            ring.seal("", CONTEXT)
                .map(|s| ring.open(&s, CONTEXT).is_ok()),
            Ok(true)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let ring = Keyring::new(Key::generate(), Vec::new());
        let sealed = ring.seal("secret", CONTEXT).unwrap();
        let (head, payload) = sealed.rsplit_once('.').unwrap();
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let altered = format!(
                "{head}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
            );
            assert_eq!(
                ring.open(&altered, CONTEXT).unwrap_err(),
                CryptoError::Forged,
                "{i}"
            );
            bytes[i] ^= 1;
        }
        // Another context (another row, another project) does not open it either.
        assert_eq!(
            ring.open(&sealed, "provider_accounts:pacc_2:credentials")
                .unwrap_err(),
            CryptoError::Forged
        );
        for junk in [
            "",
            "sb1",
            "sb1.abc",
            "sb2.x.y",
            "sb1.abcd.!!!",
            "sb1.abcd.AAAA",
        ] {
            assert_eq!(
                ring.open(junk, CONTEXT).unwrap_err(),
                CryptoError::Malformed,
                "{junk}"
            );
        }
    }

    #[test]
    fn a_wrong_key_does_not_open() {
        let sealed = Keyring::new(Key::generate(), Vec::new())
            .seal("secret", CONTEXT)
            .unwrap();
        let other = Keyring::new(Key::generate(), Vec::new());
        assert!(matches!(
            other.open(&sealed, CONTEXT),
            Err(CryptoError::UnknownKey(_))
        ));
        // Even one that claims the same id.
        let (_, rest) = sealed.split_once('.').unwrap();
        let (_, payload) = rest.split_once('.').unwrap();
        let forged = format!("sb1.{}.{payload}", other.current_id());
        assert_eq!(
            other.open(&forged, CONTEXT).unwrap_err(),
            CryptoError::Forged
        );
    }

    #[test]
    fn rotation_opens_with_previous_keys_and_seals_with_the_new_one() {
        let old = Key::generate();
        let before = Keyring::new(old.clone(), Vec::new());
        let sealed = before.seal("secret", CONTEXT).unwrap();
        let after = Keyring::new(Key::generate(), vec![old]);
        assert_eq!(
            after.open(&sealed, CONTEXT).unwrap().expose_secret(),
            "secret"
        );
        assert!(
            !after.is_current(&sealed),
            "the old value asks to be re-sealed"
        );
        let resealed = after.seal("secret", CONTEXT).unwrap();
        assert!(after.is_current(&resealed));
        assert!(matches!(
            before.open(&resealed, CONTEXT),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn keys_parse_from_base64_or_hex_only_at_32_bytes() {
        let key = Key::generate();
        let hex_form = hex::encode(key.bytes.expose_secret());
        let std_form = base64::engine::general_purpose::STANDARD.encode(key.bytes.expose_secret());
        for form in [
            key.encode(),
            hex_form,
            std_form.clone(),
            format!(" {std_form}\n"),
        ] {
            let parsed = Key::parse(&form).unwrap();
            assert_eq!(parsed, key, "{form}");
            assert_eq!(parsed.id(), key.id());
        }
        for bad in [
            "",
            "short",
            "c2hvcnQ=",
            &"a".repeat(64 + 2),
            "not base64 at all!",
        ] {
            assert!(Key::parse(bad).unwrap_err().contains("32 bytes"), "{bad}");
        }
        assert_eq!(format!("{key:?}"), format!("Key({})", key.id()));
    }

    #[tokio::test]
    async fn a_generated_key_is_kept_and_stays_readable_once_one_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        db.migrate().await.unwrap();
        let mut config = Config::with_data_dir(dir.path());
        let first = Keyring::load(&db, &config).await.unwrap();
        let again = Keyring::load(&db, &config).await.unwrap();
        assert_eq!(first.current_id(), again.current_id(), "generated once");
        let sealed = first.seal("secret", CONTEXT).unwrap();

        config.secret_key = Some(Key::generate());
        let configured = Keyring::load(&db, &config).await.unwrap();
        assert_ne!(configured.current_id(), first.current_id());
        assert_eq!(
            configured.open(&sealed, CONTEXT).unwrap().expose_secret(),
            "secret"
        );
        db.close().await;
    }
}
