//! Quiet hours and do-not-disturb: when a delivery due at some instant may actually go.
//!
//! Quiet hours are a daily window of wall-clock times in the recipient's IANA time zone
//! (`22:00`–`08:00` wraps midnight). A delivery that falls inside the window, or before a
//! do-not-disturb end, is *deferred* to the first instant after both, never dropped.
//! `critical` deliveries (one-time codes) ignore both.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Why a quiet-hours window was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuietError {
    /// Not `HH:MM` (24-hour).
    #[error("must be a time of day as HH:MM (24-hour), such as 22:00")]
    BadTime,
    /// Start and end are the same time: an empty (or a whole-day) window is ambiguous.
    #[error("start and end must differ")]
    Empty,
}

/// A daily window of wall-clock times, start inclusive, end exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    start: Time,
    end: Time,
}

/// Parses `HH:MM` strictly (two digits each, 00–23 and 00–59).
fn parse_time(s: &str) -> Result<Time, QuietError> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return Err(QuietError::BadTime);
    }
    let hour = i8::try_from((b[0] - b'0') * 10 + (b[1] - b'0')).map_err(|_| QuietError::BadTime)?;
    let minute =
        i8::try_from((b[3] - b'0') * 10 + (b[4] - b'0')).map_err(|_| QuietError::BadTime)?;
    Time::new(hour, minute, 0, 0).map_err(|_| QuietError::BadTime)
}

impl QuietHours {
    /// The window from `start` to `end`, both `HH:MM`.
    pub fn parse(start: &str, end: &str) -> Result<QuietHours, QuietError> {
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if start == end {
            return Err(QuietError::Empty);
        }
        Ok(QuietHours { start, end })
    }

    /// The window's start as `HH:MM`.
    pub fn start(&self) -> String {
        self.start.strftime("%H:%M").to_string()
    }

    /// The window's end as `HH:MM`.
    pub fn end(&self) -> String {
        self.end.strftime("%H:%M").to_string()
    }

    /// Whether `t` (a wall-clock time) is inside the window.
    fn contains(&self, t: Time) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// `at` itself when it is outside the window in `zone`, else the instant the window
    /// ends. In a DST gap the end moves forward with the clock; in a repeated hour it is
    /// the first occurrence of the end that is later than `at`.
    pub fn release(&self, at: Timestamp, zone: &TimeZone) -> Timestamp {
        let local = at.to_zoned(zone.clone());
        let t = local.time();
        if !self.contains(t) {
            return at;
        }
        // Inside a wrapping window before midnight, it ends tomorrow.
        let day = if self.start > self.end && t >= self.start {
            local.date().tomorrow().unwrap_or(local.date())
        } else {
            local.date()
        };
        first_after(day, self.end, zone, at)
    }
}

/// The first instant later than `after` whose wall-clock reading in `zone` is `time` on
/// `day` (or, failing that because of a repeated hour, on the following day).
fn first_after(day: Date, time: Time, zone: &TimeZone, after: Timestamp) -> Timestamp {
    let mut day = day;
    for _ in 0..2 {
        let ambiguous = zone.to_ambiguous_timestamp(day.to_datetime(time));
        // In a gap both pick the reading after it; in a repeated hour, the first, then the second.
        for candidate in [ambiguous.compatible(), ambiguous.later()]
            .into_iter()
            .flatten()
        {
            if candidate > after {
                return candidate;
            }
        }
        day = match day.tomorrow() {
            Ok(d) => d,
            Err(_) => break,
        };
    }
    after
}

/// When a delivery due at `at` may go, for a recipient in `zone` with optional quiet hours
/// and an optional do-not-disturb end. `critical` deliveries go at `at`.
pub fn deliver_at(
    at: Timestamp,
    zone: &TimeZone,
    quiet: Option<&QuietHours>,
    dnd_until: Option<Timestamp>,
    critical: bool,
) -> Timestamp {
    if critical {
        return at;
    }
    let at = match dnd_until {
        Some(until) if until > at => until,
        _ => at,
    };
    match quiet {
        Some(q) => q.release(at, zone),
        None => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn times_are_strict_hh_mm() {
        assert!(QuietHours::parse("22:00", "08:00").is_ok());
        for bad in ["8:00", "24:00", "22:60", "22-00", "22:00:00", "", "ab:cd"] {
            assert_eq!(
                QuietHours::parse(bad, "08:00"),
                Err(QuietError::BadTime),
                "{bad}"
            );
        }
        assert_eq!(QuietHours::parse("08:00", "08:00"), Err(QuietError::Empty));
        let q = QuietHours::parse("22:30", "07:05").unwrap();
        assert_eq!(
            (q.start(), q.end()),
            ("22:30".to_string(), "07:05".to_string())
        );
    }

    #[test]
    fn a_window_wrapping_midnight_in_tashkent_defers_to_eight() {
        // Asia/Tashkent is UTC+5 all year.
        let q = QuietHours::parse("22:00", "08:00").unwrap();
        let zone = tz("Asia/Tashkent");
        // 23:30 local on 1 March → 08:00 local on 2 March = 03:00Z.
        assert_eq!(
            q.release(ts("2026-03-01T18:30:00Z"), &zone),
            ts("2026-03-02T03:00:00Z")
        );
        // 02:00 local (after midnight) → 08:00 the same day.
        assert_eq!(
            q.release(ts("2026-03-01T21:00:00Z"), &zone),
            ts("2026-03-02T03:00:00Z")
        );
        // Exactly 22:00 is inside, exactly 08:00 is outside.
        assert_eq!(
            q.release(ts("2026-03-01T17:00:00Z"), &zone),
            ts("2026-03-02T03:00:00Z")
        );
        assert_eq!(
            q.release(ts("2026-03-02T03:00:00Z"), &zone),
            ts("2026-03-02T03:00:00Z")
        );
        // 12:00 local: outside, unchanged.
        assert_eq!(
            q.release(ts("2026-03-01T07:00:00Z"), &zone),
            ts("2026-03-01T07:00:00Z")
        );
    }

    #[test]
    fn a_daytime_window_does_not_wrap() {
        let q = QuietHours::parse("12:00", "14:00").unwrap();
        let zone = tz("Asia/Tashkent");
        assert_eq!(
            q.release(ts("2026-03-01T07:30:00Z"), &zone),
            ts("2026-03-01T09:00:00Z")
        );
        assert_eq!(
            q.release(ts("2026-03-01T20:00:00Z"), &zone),
            ts("2026-03-01T20:00:00Z")
        );
    }

    #[test]
    fn the_end_follows_the_clock_across_daylight_saving_changes() {
        let q = QuietHours::parse("22:00", "08:00").unwrap();
        let zone = tz("America/New_York");
        // Night of 7–8 March 2026 (clocks go forward at 02:00): 23:00 EST = 04:00Z;
        // the window ends at 08:00 EDT = 12:00Z, a night one hour shorter.
        assert_eq!(
            q.release(ts("2026-03-08T04:00:00Z"), &zone),
            ts("2026-03-08T12:00:00Z")
        );
        // Night of 31 Oct – 1 Nov 2026 (back at 02:00): 23:00 EDT = 03:00Z; 08:00 EST = 13:00Z.
        assert_eq!(
            q.release(ts("2026-11-01T03:00:00Z"), &zone),
            ts("2026-11-01T13:00:00Z")
        );
    }

    #[test]
    fn an_end_in_the_skipped_hour_moves_forward_and_in_the_repeated_hour_stays_ahead() {
        let zone = tz("America/New_York");
        // Ends at 02:30, which does not exist on 8 March 2026: released at 03:30 EDT = 07:30Z.
        let q = QuietHours::parse("23:00", "02:30").unwrap();
        assert_eq!(
            q.release(ts("2026-03-08T05:00:00Z"), &zone),
            ts("2026-03-08T07:30:00Z")
        );
        // Ends at 01:30, which happens twice on 1 November 2026 (05:30Z and 06:30Z).
        let q = QuietHours::parse("23:00", "01:30").unwrap();
        // At 01:10 EDT (05:10Z) the first 01:30 is next.
        assert_eq!(
            q.release(ts("2026-11-01T05:10:00Z"), &zone),
            ts("2026-11-01T05:30:00Z")
        );
        // At 01:10 EST (06:10Z), after the first 01:30 passed: the second one.
        assert_eq!(
            q.release(ts("2026-11-01T06:10:00Z"), &zone),
            ts("2026-11-01T06:30:00Z")
        );
    }

    #[test]
    fn dnd_then_quiet_hours_and_critical_bypasses_both() {
        let q = QuietHours::parse("22:00", "08:00").unwrap();
        let zone = tz("Asia/Tashkent");
        let at = ts("2026-03-01T07:00:00Z"); // 12:00 local
                                             // DND until 23:00 local, which is inside quiet hours: goes at 08:00 next day.
        let dnd = ts("2026-03-01T18:00:00Z");
        assert_eq!(
            deliver_at(at, &zone, Some(&q), Some(dnd), false),
            ts("2026-03-02T03:00:00Z")
        );
        // DND already over: unchanged.
        assert_eq!(
            deliver_at(at, &zone, Some(&q), Some(ts("2026-03-01T06:00:00Z")), false),
            at
        );
        // DND ending at 15:00 local, no quiet hours.
        assert_eq!(
            deliver_at(at, &zone, None, Some(ts("2026-03-01T10:00:00Z")), false),
            ts("2026-03-01T10:00:00Z")
        );
        // Critical goes now, even at 23:30 local with DND on.
        let night = ts("2026-03-01T18:30:00Z");
        assert_eq!(deliver_at(night, &zone, Some(&q), Some(dnd), true), night);
    }
}
