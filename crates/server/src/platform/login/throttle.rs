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

use switchboard_core::db::{Db, Exec};
use switchboard_core::on_db;
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
    let row = locked_row(tx.ex(), email, now_us).await?;
    let (failures, last_failure_at, locked_until) = row;
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
    on_db!(tx.ex(), c => sqlx::query(
        "UPDATE login_failures SET failures = $2, last_failure_at = $3, locked_until = $4 \
         WHERE email = $1",
    )
    .bind(email)
    .bind(failures)
    .bind(now_us)
    .bind(locked_until)
    .execute(c)
    .await
    .map(|_| ()))?;
    tx.commit().await?;
    Ok(Charge::Go)
}

/// The account's row, created if needed and locked until the transaction ends (PostgreSQL
/// `FOR UPDATE`; on SQLite the transaction runs alone on the writer).
async fn locked_row(
    mut ex: Exec<'_>,
    email: &str,
    now_us: i64,
) -> Result<(i64, i64, i64), sqlx::Error> {
    on_db!(ex.re(), c => sqlx::query(
        "INSERT INTO login_failures (email, failures, last_failure_at, locked_until) \
         VALUES ($1, 0, $2, 0) ON CONFLICT DO NOTHING",
    )
    .bind(email)
    .bind(now_us)
    .execute(c)
    .await
    .map(|_| ()))?;
    const SQL: &str =
        "SELECT failures, last_failure_at, locked_until FROM login_failures WHERE email = $1";
    match ex {
        Exec::Sqlite(c) => sqlx::query_as(SQL).bind(email).fetch_one(c).await,
        Exec::Postgres(c) => {
            sqlx::query_as(&format!("{SQL} FOR UPDATE"))
                .bind(email)
                .fetch_one(c)
                .await
        }
    }
}

/// Forgets the account's failures (after a successful login).
pub async fn clear(db: &Db, email: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    on_db!(tx.ex(), c => sqlx::query("DELETE FROM login_failures WHERE email = $1")
        .bind(email)
        .execute(c)
        .await
        .map(|_| ()))?;
    tx.commit().await
}

/// Deletes counts that have been quiet for [`QUIET_SECS`] (they would start again anyway);
/// returns how many. Run by the hourly maintenance.
pub async fn prune(db: &Db, now: Timestamp) -> Result<u64, sqlx::Error> {
    let cutoff = time::to_db(time::add_secs(now, -QUIET_SECS));
    let mut tx = db.begin().await?;
    let n = on_db!(tx.ex(), c => sqlx::query(
        "DELETE FROM login_failures WHERE last_failure_at < $1 AND locked_until < $1",
    )
    .bind(cutoff)
    .execute(c)
    .await?
    .rows_affected());
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
