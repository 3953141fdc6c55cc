//! Password hashing with argon2id (the crate's recommended parameters: about 19 MiB and tens
//! of milliseconds of one core per hash), bounded by [`Passwords`].

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::sync::Arc;
use switchboard_core::config::Config;
use tokio::sync::Semaphore;

/// Password work that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every slot is busy and the waiting line is full: try again shortly.
    #[error("too many password checks in progress")]
    Busy,
    /// Hashing failed (only on misconfiguration of the algorithm) or its task died.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Runs every argon2 hash and verification of a node: at most `concurrency` at once (one per
/// core by default) on blocking threads, at most `queue` more waiting; any request beyond
/// that is refused at once with [`PasswordError::Busy`], so a flood of logins costs neither
/// unbounded memory (each hash holds ~19 MiB) nor a growing backlog.
#[derive(Clone, Debug)]
pub struct Passwords {
    /// Work running or waiting: `concurrency + queue` permits, taken without waiting.
    admitted: Arc<Semaphore>,
    /// Work running: `concurrency` permits.
    running: Arc<Semaphore>,
}

impl Passwords {
    /// `concurrency` 0 means one per CPU core.
    pub fn new(concurrency: u32, queue: u32) -> Passwords {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = match usize::try_from(concurrency) {
            Ok(0) | Err(_) => cores,
            Ok(n) => n,
        };
        let waiting = usize::try_from(queue).unwrap_or(0);
        Passwords {
            admitted: Arc::new(Semaphore::new(running + waiting)),
            running: Arc::new(Semaphore::new(running)),
        }
    }

    /// Sized by `password_hash_concurrency` and `password_hash_queue`.
    pub fn from_config(config: &Config) -> Passwords {
        Passwords::new(config.password_hash_concurrency, config.password_hash_queue)
    }

    /// A place in line, or [`PasswordError::Busy`] at once when the line is full. Taking it
    /// before other work (a login's throttle bookkeeping) means a busy answer costs nothing.
    pub fn admit(&self) -> Result<Admitted, PasswordError> {
        Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map(|admitted| Admitted {
                admitted,
                running: Arc::clone(&self.running),
            })
            .map_err(|_| PasswordError::Busy)
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.admit()?.hash(password).await
    }

    /// Checks a password against a stored PHC string (see [`Admitted::verify`]).
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.admit()?.verify(password, stored).await
    }
}

/// Admission to [`Passwords`]: one piece of work waits for a free slot and runs.
#[derive(Debug)]
pub struct Admitted {
    admitted: tokio::sync::OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

impl Admitted {
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let running = self
            .running
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Busy)?;
        let admitted = self.admitted;
        // The permits go with the work: a caller that gives up (client gone) does not free
        // a slot while its hash still runs.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            work()
        })
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()))
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(move || hash_now(&password)).await?
    }

    /// Checks a password against a stored PHC string; `None` (unknown account) checks it
    /// against a decoy hash, so that timing does not reveal which accounts exist. Malformed
    /// hashes never verify.
    pub async fn verify(
        self,
        password: &str,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let password = password.to_owned();
        self.run(move || {
            let stored = stored.unwrap_or_else(|| decoy_hash().to_owned());
            verify_now(&password, &stored)
        })
        .await
    }

    /// Checks a password against each stored hash, one after another in this one slot
    /// (callers bound the list); none at all checks it against the decoy, so an unknown
    /// account costs what one account costs.
    pub async fn verify_each(
        self,
        password: &str,
        stored: Vec<String>,
    ) -> Result<Vec<bool>, PasswordError> {
        let password = password.to_owned();
        self.run(move || {
            if stored.is_empty() {
                verify_now(&password, decoy_hash());
            }
            stored.iter().map(|s| verify_now(&password, s)).collect()
        })
        .await
    }
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Failed(e.to_string()))
}

fn verify_now(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a random password, verified against when the login e-mail is unknown.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_now(&switchboard_core::secret::random_token("")).unwrap_or_default())
}

/// Checks the rules a new password must meet.
pub fn check_strength(password: &str) -> Result<(), String> {
    PASSWORD.check(password)
}

/// Passwords: long enough to resist guessing, short enough to bound hashing work.
pub const PASSWORD: switchboard_core::rules::Text =
    switchboard_core::rules::Text::new(8, 256, switchboard_core::rules::Chars::Any);

/// The schema of a password field.
pub fn password_schema() -> utoipa::openapi::Object {
    PASSWORD.schema("Password")
}

/// The same, optional.
pub fn optional_password_schema() -> utoipa::openapi::Object {
    PASSWORD.nullable("New password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let p = Passwords::new(1, 4);
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse", Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong horse", Some(h)).await.unwrap());
        assert!(!p.verify("x", Some("not a hash".into())).await.unwrap());
        assert!(!p.verify("x", None).await.unwrap());
    }

    #[tokio::test]
    async fn refuses_beyond_its_slots_and_line() {
        let p = Passwords::new(1, 0);
        // Hold the only slot, as a running hash would.
        let held = Arc::clone(&p.admitted).try_acquire_owned().unwrap();
        assert!(matches!(
            p.hash("whatever1").await,
            Err(PasswordError::Busy)
        ));
        drop(held);
        assert!(p.hash("whatever1").await.is_ok());
    }
}
