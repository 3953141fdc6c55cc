//! Delay before the next attempt of a failed job.

use crate::model::Invalid;
use rand::Rng;
use serde::{Deserialize, Serialize};
use switchboard_core::rules::{Int, Items};
use utoipa::openapi::schema::{Object, Schema};

/// Every delay of a policy, ms.
pub const DELAY: Int = Int::new(0, 30 * 24 * 3600 * 1000).said("0 to 30 days (in ms)");
/// How many delays a list policy has.
pub const DELAYS: Items = Items::new(1, 100);

fn base_schema() -> Object {
    DELAY.schema("First delay (default 1000); at most `max_ms`")
}
fn max_schema() -> Object {
    DELAY.schema("Largest delay (default 3600000); at least `base_ms`")
}
fn delay_schema() -> Object {
    DELAY.schema("Delay")
}
fn delays_schema() -> Schema {
    DELAYS.schema(
        DELAY.schema(""),
        "Delay of attempt n is the n-th entry; the last repeats",
        "delays",
    )
}

/// A retry delay policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backoff {
    /// `base_ms × 2^(attempt-1)`, capped at `max_ms`; with jitter, a uniform draw from
    /// half to all of it (so retries of many jobs spread out).
    Exponential {
        /// First delay.
        #[serde(default = "default_base")]
        #[schema(schema_with = base_schema)]
        base_ms: i64,
        /// Largest delay.
        #[serde(default = "default_max")]
        #[schema(schema_with = max_schema)]
        max_ms: i64,
        /// Randomise.
        #[serde(default = "default_jitter")]
        jitter: bool,
    },
    /// The same delay every time.
    Fixed {
        /// Delay.
        #[schema(schema_with = delay_schema)]
        delay_ms: i64,
    },
    /// Delay of attempt n is the n-th entry; the last repeats.
    List {
        /// Delays.
        #[schema(schema_with = delays_schema)]
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

impl Backoff {
    /// Completes the derived schema: each variant refuses unknown fields, as
    /// `deny_unknown_fields` does (utoipa does not carry it into the variants).
    pub fn constrain_schema(schema: &mut Schema) {
        if let Schema::OneOf(one_of) = schema {
            for item in &mut one_of.items {
                if let utoipa::openapi::RefOr::T(Schema::Object(o)) = item {
                    o.additional_properties = Some(Box::new(
                        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                    ));
                }
            }
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), Invalid> {
        let ok = |v: i64| DELAY.contains(v);
        let valid = match self {
            Backoff::Exponential {
                base_ms, max_ms, ..
            } => ok(*base_ms) && ok(*max_ms) && base_ms <= max_ms,
            Backoff::Fixed { delay_ms } => ok(*delay_ms),
            Backoff::List { delays_ms } => {
                DELAYS.allows(delays_ms.len()) && delays_ms.iter().all(|d| ok(*d))
            }
        };
        if valid {
            Ok(())
        } else {
            Err(Invalid::new(
                "backoff",
                format!(
                    "delays {} (base ≤ max; a list {})",
                    DELAY.message(),
                    DELAYS.message("delays")
                ),
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
