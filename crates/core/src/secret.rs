//! Random tokens and their stored digests. API keys, refresh tokens and session cookies are
//! 256-bit random values, so a plain SHA-256 digest is enough to store them safely (a slow
//! password hash would only cost latency on every request); passwords use argon2id.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random token: `prefix` followed by 43 URL-safe base64 characters (256 bits).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest stored in place of a token.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_digests_stable() {
        let a = random_token("sb_");
        let b = random_token("sb_");
        assert_ne!(a, b);
        assert!(a.starts_with("sb_") && a.len() == 46);
        assert_eq!(digest("x"), digest("x"));
        assert_ne!(digest(&a), digest(&b));
    }
}
