//! Time is UTC everywhere in storage: microseconds since the Unix epoch in a BIGINT column,
//! on both backends, so that ordering and arithmetic in SQL are plain integer work.

pub use jiff::Timestamp;

/// The current instant, truncated to the microsecond precision of storage (so a value
/// returned at creation is identical to the one read back later).
pub fn now() -> Timestamp {
    from_db(Timestamp::now().as_microsecond())
}

/// A timestamp as stored in the database.
pub fn to_db(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// A stored timestamp back to a [`Timestamp`]; out-of-range values clamp to the limits.
pub fn from_db(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).unwrap_or(if micros < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `ts` plus whole seconds (saturating).
pub fn add_secs(ts: Timestamp, secs: i64) -> Timestamp {
    from_db(to_db(ts).saturating_add(secs.saturating_mul(1_000_000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_microseconds() {
        let ts: Timestamp = "2026-11-23T05:30:00.123456Z".parse().unwrap();
        assert_eq!(from_db(to_db(ts)), ts);
        assert_eq!(add_secs(ts, 60).to_string(), "2026-11-23T05:31:00.123456Z");
    }
}
