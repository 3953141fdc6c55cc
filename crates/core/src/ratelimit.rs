//! Token buckets: in-process by default, shared by every node through Redis when configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A bucket's shape: `capacity` tokens, refilled at `per_minute` tokens a minute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Most tokens the bucket holds (the burst).
    pub capacity: u32,
    /// Tokens added per minute.
    pub per_minute: u32,
}

impl Rate {
    fn per_ms(&self) -> f64 {
        f64::from(self.per_minute) / 60_000.0
    }
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket's capacity.
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one token is available (0 when allowed).
    pub retry_after_secs: u64,
}

fn decide(rate: Rate, tokens: f64, allowed: bool) -> Decision {
    let per_ms = rate.per_ms();
    let missing = (f64::from(rate.capacity) - tokens).max(0.0);
    let to_secs = |ms: f64| (ms / 1000.0).ceil().max(0.0) as u64;
    Decision {
        allowed,
        limit: rate.capacity,
        remaining: tokens.max(0.0).floor() as u32,
        reset_secs: to_secs(missing / per_ms),
        retry_after_secs: if allowed {
            0
        } else {
            to_secs((1.0 - tokens) / per_ms).max(1)
        },
    }
}

/// One bucket's state.
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Where buckets live.
#[derive(Clone)]
pub enum RateLimiter {
    /// In this process only.
    Memory(Arc<Mutex<HashMap<String, Bucket>>>),
    /// In Redis, shared by every node.
    Redis {
        /// Connection.
        conn: redis::aio::ConnectionManager,
        /// Key prefix.
        prefix: String,
    },
}

// Takes one token if there is one. The clock is Redis' own, so nodes with skewed clocks agree.
const TAKE_SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return {allowed, tostring(tokens)}
";

impl RateLimiter {
    /// Buckets in this process.
    pub fn memory() -> RateLimiter {
        RateLimiter::Memory(Arc::default())
    }

    /// Buckets in Redis under `prefix`.
    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str) -> RateLimiter {
        RateLimiter::Redis {
            conn,
            prefix: format!("{prefix}rl:"),
        }
    }

    /// Takes a token from bucket `key`. If Redis cannot be reached the request is let
    /// through (and logged): an outage of the limiter must not become an outage of the API.
    pub async fn take(&self, key: &str, rate: Rate) -> Decision {
        match self {
            RateLimiter::Memory(buckets) => {
                let now = Instant::now();
                let mut map = buckets.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() > 100_000 {
                    // Drop buckets that have refilled: they hold no information.
                    map.retain(|_, b| {
                        (now - b.at).as_millis() as f64 * rate.per_ms() < f64::from(rate.capacity)
                    });
                }
                let b = map.entry(key.to_owned()).or_insert(Bucket {
                    tokens: f64::from(rate.capacity),
                    at: now,
                });
                let elapsed = (now - b.at).as_secs_f64() * 1000.0;
                b.tokens = (b.tokens + elapsed * rate.per_ms()).min(f64::from(rate.capacity));
                b.at = now;
                let allowed = b.tokens >= 1.0;
                if allowed {
                    b.tokens -= 1.0;
                }
                decide(rate, b.tokens, allowed)
            }
            RateLimiter::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let result: redis::RedisResult<(i64, String)> = redis::Script::new(TAKE_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .arg(rate.capacity)
                    .arg(rate.per_ms())
                    .invoke_async(&mut conn)
                    .await;
                match result {
                    Ok((allowed, tokens)) => {
                        decide(rate, tokens.parse().unwrap_or(0.0), allowed == 1)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rate limiter unavailable; letting request through");
                        decide(rate, f64::from(rate.capacity), true)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_bucket_allows_burst_then_refuses() {
        let rl = RateLimiter::memory();
        let rate = Rate {
            capacity: 3,
            per_minute: 60,
        };
        for expected_left in [2, 1, 0] {
            let d = rl.take("k", rate).await;
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_left);
        }
        let d = rl.take("k", rate).await;
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        assert!(rl.take("other", rate).await.allowed);
    }
}
