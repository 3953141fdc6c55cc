//! Verification codes (one-time passwords sent by SMS or e-mail).
//!
//! A code is drawn uniformly from the operating system's generator and never stored: the
//! database keeps `HMAC-SHA256(key, verification id ‖ code)`, keyed with a secret of the
//! installation, so a copy of the table does not let anyone try the million six-digit codes
//! offline. A check compares in constant time and counts the attempt whatever the outcome;
//! the rules (expiry, attempts, resend cooldown) are decided here, the counters are stored by
//! the caller in the same transaction.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use rand::Rng;
use sha2::Sha256;

use crate::signature::constant_time_eq;

/// A fresh code of `digits` decimal digits (4 to 10), zero-padded.
pub fn generate(digits: u32) -> String {
    let digits = digits.clamp(4, 10);
    let bound = 10u64.pow(digits);
    let n = rand::rngs::OsRng.gen_range(0..bound);
    format!("{n:0width$}", width = digits as usize)
}

/// What is stored for `code` of verification `id`: hex of the keyed hash.
pub fn digest(key: &[u8], id: &str, code: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The rules of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long a code is valid, in seconds.
    pub ttl_secs: i64,
    /// Checks allowed before the verification is closed.
    pub max_attempts: u32,
    /// Seconds between two sends of a code to the same verification.
    pub resend_after_secs: i64,
}

impl Default for Policy {
    /// Ten minutes, five attempts, a resend after a minute (what Twilio Verify and most
    /// banks' SMS codes use).
    fn default() -> Self {
        Policy {
            ttl_secs: 600,
            max_attempts: 5,
            resend_after_secs: 60,
        }
    }
}

/// A verification as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Its id (part of the hashed message).
    pub id: String,
    /// [`digest`] of the current code.
    pub code_digest: String,
    /// When the current code was sent.
    pub sent_at: Timestamp,
    /// When the current code stops being valid.
    pub expires_at: Timestamp,
    /// Checks made so far.
    pub attempts: u32,
    /// Whether a check already succeeded.
    pub approved: bool,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The code matched: the verification is approved (attempts counted).
    Approved,
    /// It did not; `remaining` checks are left (0: closed).
    Wrong {
        /// Checks left.
        remaining: u32,
    },
    /// The code's time is over (nothing counted).
    Expired,
    /// No checks left (nothing counted).
    Exhausted,
    /// Approved before: a code works once (nothing counted).
    AlreadyApproved,
}

/// Checks `code` against `state` at `now`; the caller stores `attempts + 1` unless the
/// outcome says nothing was counted, and `approved` on [`Outcome::Approved`].
pub fn check(key: &[u8], state: &State, policy: &Policy, code: &str, now: Timestamp) -> Outcome {
    if state.approved {
        return Outcome::AlreadyApproved;
    }
    if state.attempts >= policy.max_attempts {
        return Outcome::Exhausted;
    }
    if now >= state.expires_at {
        return Outcome::Expired;
    }
    let given = digest(key, &state.id, code.trim());
    if constant_time_eq(given.as_bytes(), state.code_digest.as_bytes()) {
        Outcome::Approved
    } else {
        Outcome::Wrong {
            remaining: policy.max_attempts - state.attempts - 1,
        }
    }
}

/// When a new code may be sent for `state` (`None`: now).
pub fn resend_at(state: &State, policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    let at = state
        .sent_at
        .checked_add(jiff::SignedDuration::from_secs(policy.resend_after_secs))
        .ok()?;
    (at > now).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"installation secret";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn state(code: &str) -> State {
        State {
            id: "ver_1".into(),
            code_digest: digest(KEY, "ver_1", code),
            sent_at: ts("2026-03-01T10:00:00Z"),
            expires_at: ts("2026-03-01T10:10:00Z"),
            attempts: 0,
            approved: false,
        }
    }

    #[test]
    fn codes_have_the_asked_digits_and_vary() {
        for d in [4, 6, 8] {
            let c = generate(d);
            assert_eq!(c.len(), d as usize);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(generate(2).len(), 4);
        let distinct: std::collections::HashSet<String> = (0..50).map(|_| generate(6)).collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }

    #[test]
    fn the_digest_depends_on_key_id_and_code() {
        let d = digest(KEY, "ver_1", "123456");
        assert_eq!(d.len(), 64);
        assert_ne!(d, digest(b"other", "ver_1", "123456"));
        assert_ne!(d, digest(KEY, "ver_2", "123456"));
        assert_ne!(d, digest(KEY, "ver_1", "123457"));
        // The separator keeps id and code apart ("ver_11" + "23456" is another message).
        assert_ne!(d, digest(KEY, "ver_11", "23456"));
    }

    #[test]
    fn right_code_in_time_approves_once() {
        let p = Policy::default();
        let now = ts("2026-03-01T10:05:00Z");
        let mut s = state("123456");
        assert_eq!(check(KEY, &s, &p, " 123456 ", now), Outcome::Approved);
        s.approved = true;
        assert_eq!(check(KEY, &s, &p, "123456", now), Outcome::AlreadyApproved);
    }

    #[test]
    fn wrong_codes_count_down_and_then_close() {
        let p = Policy::default();
        let now = ts("2026-03-01T10:05:00Z");
        let mut s = state("123456");
        for left in (0..5).rev() {
            assert_eq!(
                check(KEY, &s, &p, "000000", now),
                Outcome::Wrong { remaining: left }
            );
            s.attempts += 1;
        }
        // Even the right code is refused now.
        assert_eq!(check(KEY, &s, &p, "123456", now), Outcome::Exhausted);
    }

    #[test]
    fn an_expired_code_is_refused_even_if_right() {
        let p = Policy::default();
        let s = state("123456");
        assert_eq!(
            check(KEY, &s, &p, "123456", ts("2026-03-01T10:10:00Z")),
            Outcome::Expired
        );
        assert_eq!(
            check(KEY, &s, &p, "123456", ts("2026-03-01T10:09:59Z")),
            Outcome::Approved
        );
    }

    #[test]
    fn resend_waits_for_the_cooldown() {
        let p = Policy::default();
        let s = state("123456");
        assert_eq!(
            resend_at(&s, &p, ts("2026-03-01T10:00:30Z")),
            Some(ts("2026-03-01T10:01:00Z"))
        );
        assert_eq!(resend_at(&s, &p, ts("2026-03-01T10:01:00Z")), None);
    }
}
