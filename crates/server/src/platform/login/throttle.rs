//! Per-account login throttle, in the database so every node sees the same count.
//!
//! Every password login (API and dashboard) is counted against its normalised e-mail
//! *before* the password is checked, whether or not such an account exists; a success clears
//! the count. From the [`MAX_FAILURES`]th attempt in a row on, the account is locked for a
//! delay that doubles with each further failure, from [`FIRST_LOCK_SECS`] up to
//! [`MAX_LOCK_SECS`]; while locked every attempt is refused without any password work. The
//! count is forgotten [`QUIET_SECS`] after the last failure and the end of the last lock.
//! Counting before checking means concurrent guesses cannot all slip in before the first
//! failure is recorded.

use super::repo;
use switchboard_core::db::Db;
use switchboard_core::time::{self, Timestamp};

/// Attempts in a row before the account locks.
pub const MAX_FAILURES: i64 = 5;
/// First lock; each further failure doubles it.
pub const FIRST_LOCK_SECS: i64 = 60;
/// Longest lock.
pub const MAX_LOCK_SECS: i64 = 15 * 60;
/// Quiet time after which the count starts again.
pub const QUIET_SECS: i64 = 15 * 60;

/// Whether an attempt may check its password.
#[derive(Debug, PartialEq, Eq)]
pub enum Charge {
    /// Counted; check the password.
    Go,
    /// Locked: refuse, and say when to come back.
    Locked {
        /// Seconds until the lock ends (at least 1).
        retry_after_secs: i64,
    },
}

/// How long the `failures`th failure in a row locks the account for, if at all.
fn lock_secs(failures: i64) -> Option<i64> {
    let doublings = u32::try_from(failures - MAX_FAILURES).ok()?;
    Some(
        FIRST_LOCK_SECS
            .checked_shl(doublings.min(20))
            .unwrap_or(MAX_LOCK_SECS)
            .min(MAX_LOCK_SECS),
    )
}

/// Counts a login attempt for `email` (normalised), or says it is locked.
pub async fn charge(db: &Db, email: &str, now: Timestamp) -> Result<Charge, sqlx::Error> {
    let now_us = time::to_db(now);
    let mut tx = db.begin().await?;
    let (failures, last_failure_at, locked_until) =
        repo::lock_failures(tx.ex(), email, now_us).await?;
    if locked_until > now_us {
        // Nothing written: a locked account's attempts neither count nor extend the lock.
        let secs = (locked_until - now_us + 999_999) / 1_000_000;
        return Ok(Charge::Locked {
            retry_after_secs: secs.max(1),
        });
    }
    let quiet_since = last_failure_at.max(locked_until);
    let failures = if now_us - quiet_since > QUIET_SECS * 1_000_000 {
        1
    } else {
        failures + 1
    };
    let locked_until = match lock_secs(failures) {
        Some(secs) => time::to_db(time::add_secs(now, secs)),
        None => 0,
    };
    repo::set_failures(tx.ex(), email, failures, now_us, locked_until).await?;
    tx.commit().await?;
    Ok(Charge::Go)
}

/// Forgets the account's failures (after a successful login).
pub async fn clear(db: &Db, email: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    repo::clear_failures(tx.ex(), email).await?;
    tx.commit().await
}

/// Deletes counts that have been quiet for [`QUIET_SECS`] (they would start again anyway);
/// returns how many. Run by the hourly maintenance.
pub async fn prune(db: &Db, now: Timestamp) -> Result<u64, sqlx::Error> {
    let cutoff = time::to_db(time::add_secs(now, -QUIET_SECS));
    let mut tx = db.begin().await?;
    let n = repo::prune_failures(tx.ex(), cutoff).await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_from_the_fifth_failure_up_to_fifteen_minutes() {
        let locks: Vec<Option<i64>> = (1..=11).map(lock_secs).collect();
        assert_eq!(
            locks,
            [
                None,
                None,
                None,
                None,
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(900),
                Some(900),
                Some(900)
            ]
        );
        assert_eq!(lock_secs(1000), Some(900));
    }
}
