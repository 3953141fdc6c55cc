//! Delay before the next attempt of a failed job.

use crate::model::Invalid;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A retry delay policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backoff {
    /// `base_ms × 2^(attempt-1)`, capped at `max_ms`; with jitter, a uniform draw from
    /// half to all of it (so retries of many jobs spread out).
    Exponential {
        /// First delay.
        #[serde(default = "default_base")]
        base_ms: i64,
        /// Largest delay.
        #[serde(default = "default_max")]
        max_ms: i64,
        /// Randomise.
        #[serde(default = "default_jitter")]
        jitter: bool,
    },
    /// The same delay every time.
    Fixed {
        /// Delay.
        delay_ms: i64,
    },
    /// Delay of attempt n is the n-th entry; the last repeats.
    List {
        /// Delays.
        delays_ms: Vec<i64>,
    },
}

fn default_base() -> i64 {
    1_000
}
fn default_max() -> i64 {
    3_600_000
}
fn default_jitter() -> bool {
    true
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            base_ms: default_base(),
            max_ms: default_max(),
            jitter: true,
        }
    }
}

const MAX_DELAY_MS: i64 = 30 * 24 * 3600 * 1000;

impl Backoff {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), Invalid> {
        let ok = |v: i64| (0..=MAX_DELAY_MS).contains(&v);
        let valid = match self {
            Backoff::Exponential {
                base_ms, max_ms, ..
            } => ok(*base_ms) && ok(*max_ms) && base_ms <= max_ms,
            Backoff::Fixed { delay_ms } => ok(*delay_ms),
            Backoff::List { delays_ms } => {
                !delays_ms.is_empty() && delays_ms.len() <= 100 && delays_ms.iter().all(|d| ok(*d))
            }
        };
        if valid {
            Ok(())
        } else {
            Err(Invalid::new(
                "backoff",
                "delays must be 0 to 30 days (base ≤ max; a list has 1 to 100 entries)",
            ))
        }
    }

    /// Delay after failed attempt `attempt` (1-based), in ms.
    pub fn delay_ms(&self, attempt: i32) -> i64 {
        let n = attempt.max(1);
        match self {
            Backoff::Exponential {
                base_ms,
                max_ms,
                jitter,
            } => {
                let shift = (n - 1).min(40) as u32;
                let full = base_ms.saturating_mul(1i64 << shift).min(*max_ms);
                if *jitter && full > 1 {
                    rand::thread_rng().gen_range(full / 2..=full)
                } else {
                    full
                }
            }
            Backoff::Fixed { delay_ms } => *delay_ms,
            Backoff::List { delays_ms } => {
                let i = ((n - 1) as usize).min(delays_ms.len().saturating_sub(1));
                delays_ms.get(i).copied().unwrap_or(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_and_caps() {
        let b = Backoff::Exponential {
            base_ms: 100,
            max_ms: 1000,
            jitter: false,
        };
        let d: Vec<i64> = (1..=6).map(|a| b.delay_ms(a)).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let b = Backoff::Exponential {
            base_ms: 1000,
            max_ms: 60_000,
            jitter: true,
        };
        for _ in 0..200 {
            let d = b.delay_ms(3);
            assert!((2000..=4000).contains(&d), "{d}");
        }
    }

    #[test]
    fn list_repeats_last_and_validation() {
        let b = Backoff::List {
            delays_ms: vec![5, 50],
        };
        assert_eq!([b.delay_ms(1), b.delay_ms(2), b.delay_ms(9)], [5, 50, 50]);
        assert!(Backoff::List { delays_ms: vec![] }.validate().is_err());
        assert!(Backoff::Fixed { delay_ms: -1 }.validate().is_err());
        assert!(Backoff::Exponential {
            base_ms: 10,
            max_ms: 5,
            jitter: false
        }
        .validate()
        .is_err());
    }
}
