//! Short-lived HS256 access tokens for API clients that log in as a user.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What an access token says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Project id.
    pub pid: String,
    /// The login session: its refresh-token family. The token is refused once the family is
    /// revoked (logout, refresh-token reuse, password change, disabling).
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
}

const ISSUER: &str = "switchboard";

/// Signing and verification keys.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8], ttl_secs: i64) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs,
        }
    }

    /// Token lifetime in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Signs a token for `user` of `project`, in the login session `session`.
    pub fn issue(
        &self,
        user: &str,
        project: &str,
        session: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            sub: user.to_owned(),
            pid: project.to_owned(),
            sid: session.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Checks signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let t = keys.issue("user_x", "proj_y", "tfam_z").unwrap();
        let claims = keys.verify(&t).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            ("user_x", "tfam_z")
        );
        let other = JwtKeys::new(b"fedcba9876543210fedcba9876543210", 60);
        assert!(other.verify(&t).is_err());
        let expired = JwtKeys::new(b"0123456789abcdef0123456789abcdef", -60);
        assert!(keys.verify(&expired.issue("u", "p", "s").unwrap()).is_err());
    }
}
