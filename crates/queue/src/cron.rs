//! Cron schedules: 5- or 6-field expressions in an IANA time zone (DST-correct through
//! jiff), misfire and overlap policies, exactly one job per tick across all nodes (the tick
//! is claimed by advancing `next_run_at` with a compare-and-set in the job's transaction).

use crate::model::{Invalid, JobId, ScheduleId};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use switchboard_core::rules::Text;

/// A parsed cron expression with its zone.
#[derive(Clone, Debug)]
pub struct CronSpec {
    cron: Cron,
    tz: TimeZone,
    /// The expression as given.
    pub expr: String,
    /// The IANA zone name.
    pub zone: String,
}

/// One field of a cron expression: its name, range and names, for messages and for the
/// pattern the OpenAPI schema states.
#[derive(Clone, Copy, Debug)]
pub struct CronField {
    /// `minute`, `day of week`, …
    pub name: &'static str,
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// Names standing for `min`, `min + 1`, … (any letter case).
    pub names: &'static [&'static str],
    /// Day of month: `?`, `L`, `LW` and `nW` (the weekday nearest day n).
    pub day_of_month: bool,
    /// Day of week: `?`, `nL` (the last one of the month) and `n#k` (the k-th).
    pub day_of_week: bool,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const fn field(name: &'static str, min: u32, max: u32) -> CronField {
    CronField {
        name,
        min,
        max,
        names: &[],
        day_of_month: false,
        day_of_week: false,
    }
}

/// The fields of a 6-field expression; a 5-field one has no seconds.
pub const CRON_FIELDS: [CronField; 6] = [
    field("second", 0, 59),
    field("minute", 0, 59),
    field("hour", 0, 23),
    CronField {
        day_of_month: true,
        ..field("day of month", 1, 31)
    },
    CronField {
        names: MONTHS,
        ..field("month", 1, 12)
    },
    CronField {
        names: WEEKDAYS,
        day_of_week: true,
        ..field("day of week", 0, 7)
    },
];

/// The cron expression as a text: its length bounds the work of parsing it.
pub const CRON_TEXT: Text = Text::new(9, 200, switchboard_core::rules::Chars::NotBlank);

impl CronField {
    /// `minute must be 0–59`, `month must be 1–12 or JAN–DEC`.
    pub fn rule(&self) -> String {
        let names = match (self.names.first(), self.names.last()) {
            (Some(a), Some(b)) => format!(" or {a}–{b}"),
            _ => String::new(),
        };
        format!("{} must be {}–{}{names}", self.name, self.min, self.max)
    }

    /// A regular expression (ECMA-262 and Rust alike) of this field's syntax: lists of `*`,
    /// values, ranges `a-b`, steps `*/n` and `a-b/n`, and the field's specials.
    pub fn pattern(&self) -> String {
        let number = format!("0*(?:{})", number_pattern(self.min, self.max));
        let value = if self.names.is_empty() {
            number.clone()
        } else {
            let names: Vec<String> = self.names.iter().map(|n| any_case(n)).collect();
            format!("(?:{number}|{})", names.join("|"))
        };
        let step = "/0*[1-9][0-9]*";
        let mut items = vec![
            format!("\\*(?:{step})?"),
            format!("{value}-{value}(?:{step})?"),
            value.clone(),
        ];
        if self.day_of_month {
            items.extend(["\\?".into(), "[Ll][Ww]?".into(), format!("{number}[Ww]")]);
        }
        if self.day_of_week {
            items.extend(["\\?".into(), format!("{value}(?:[Ll]|#[1-5])")]);
        }
        let item = format!("(?:{})", items.join("|"));
        format!("{item}(?:,{item})*")
    }
}

/// Alternatives matching the decimal numbers `min..=max` (without leading zeros).
fn number_pattern(min: u32, max: u32) -> String {
    let mut alts = Vec::new();
    for tens in (min / 10)..=(max / 10) {
        let lo = if tens == min / 10 { min % 10 } else { 0 };
        let hi = if tens == max / 10 { max % 10 } else { 9 };
        let digits = if lo == hi {
            lo.to_string()
        } else {
            format!("[{lo}-{hi}]")
        };
        alts.push(if tens == 0 {
            digits
        } else {
            format!("{tens}{digits}")
        });
    }
    alts.join("|")
}

fn any_case(s: &str) -> String {
    s.chars()
        .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
        .collect()
}

/// The pattern of a whole expression: 5 fields, or 6 with seconds first.
pub fn cron_pattern() -> String {
    let [second, rest @ ..] = CRON_FIELDS.map(|f| f.pattern());
    format!("^\\s*(?:{second}\\s+)?{}\\s*$", rest.join("\\s+"))
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Why `expr` (whose field count is right) does not parse: the first field that does not
/// parse on its own, with that field's rule.
fn explain(expr: &str, error: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let skip = CRON_FIELDS.len() - fields.len();
    for (i, given) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if i == j { *given } else { "*" })
            .collect();
        if parser().parse(&alone.join(" ")).is_err() {
            let f = CRON_FIELDS[i + skip];
            let mut extra = vec!["`*`", "lists `1,5`", "ranges `1-5`", "steps `*/15`"];
            if f.day_of_month {
                extra.extend(["`?`", "`L`", "`15W`"]);
            }
            if f.day_of_week {
                extra.extend(["`?`", "`5L`", "`1#2`"]);
            }
            return format!("{} (with {}); `{given}` is not", f.rule(), extra.join(", "));
        }
    }
    error.to_string()
}

impl CronSpec {
    /// Parses `expr` (5 fields, or 6 with seconds first) in IANA zone `zone`.
    pub fn parse(expr: &str, zone: &str) -> Result<CronSpec, Invalid> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(Invalid::new(
                "cron",
                format!("must have 5 fields (or 6 with seconds first), not {fields}"),
            ));
        }
        CRON_TEXT.check(expr).map_err(|m| Invalid::new("cron", m))?;
        let cron = parser()
            .parse(expr)
            .map_err(|e| Invalid::new("cron", explain(expr, &e)))?;
        let tz = TimeZone::get(zone)
            .map_err(|_| Invalid::new("timezone", format!("`{zone}` is not an IANA time zone")))?;
        let spec = CronSpec {
            cron,
            tz,
            expr: expr.to_owned(),
            zone: zone.to_owned(),
        };
        // A pattern no date matches (30 February) parses, but has no next tick: saved, it
        // would count as due at once and fire.
        if spec.next_after(Timestamp::now()).is_none() {
            return Err(Invalid::new(
                "cron",
                format!(
                    "`{expr}` never fires: no date matches it (such as 30 February or 31 April)"
                ),
            ));
        }
        Ok(spec)
    }

    /// Whether it can fire more than once in a minute (its seconds field, with six fields,
    /// names more than one second). Five-field expressions fire at most once a minute.
    pub fn more_than_once_a_minute(&self) -> bool {
        self.cron.pattern.seconds.values().len() > 1
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let z = Zoned::new(after, self.tz.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|n| n.timestamp())
    }

    /// The next `n` ticks after `after`.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// What to do with ticks missed while no node was running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Drop them; continue with the next future tick.
    Skip,
    /// Run once for all of them, then continue.
    #[default]
    RunOnce,
    /// Run each of them, up to `backfill_limit`.
    Backfill,
}

/// Whether a tick may start while the previous run is unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Always enqueue.
    #[default]
    Allow,
    /// Skip the tick while the previous job is not final.
    Skip,
}

/// A stored schedule.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    /// `sched_…`
    #[schema(value_type = String)]
    pub id: ScheduleId,
    /// Unique name in the project.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA zone.
    pub timezone: String,
    /// The job each tick enqueues (same shape as `POST /v1/jobs`).
    pub job: serde_json::Value,
    /// Missed ticks policy.
    pub misfire: Misfire,
    /// Most missed ticks `backfill` runs.
    pub backfill_limit: i32,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Paused schedules do not tick.
    pub paused: bool,
    /// Next tick.
    #[schema(value_type = String, format = DateTime)]
    pub next_run_at: Timestamp,
    /// Last tick that enqueued a job.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_run_at: Option<Timestamp>,
    /// Job of the last tick.
    #[schema(value_type = Option<String>)]
    pub last_job_id: Option<JobId>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The ticks due at `now` for a schedule whose next tick was `next`, per the misfire
/// policy, and the following next tick. A tick counts as on time within `grace_secs`.
pub fn due_ticks(
    spec: &CronSpec,
    next: Timestamp,
    now: Timestamp,
    misfire: Misfire,
    backfill_limit: i32,
    grace_secs: i64,
) -> (Vec<Timestamp>, Option<Timestamp>) {
    if next > now {
        return (Vec::new(), Some(next));
    }
    let mut missed = vec![next];
    let mut t = next;
    while let Some(n) = spec.next_after(t) {
        if n > now {
            break;
        }
        missed.push(n);
        t = n;
        if missed.len() > 10_000 {
            break;
        }
    }
    let following = spec.next_after(now);
    let late = now.as_second() - missed.last().map(|m| m.as_second()).unwrap_or(0) > grace_secs
        || missed.len() > 1;
    let ticks = match misfire {
        _ if !late => missed,
        Misfire::Skip => {
            // Only a tick that is (nearly) on time runs.
            missed
                .into_iter()
                .filter(|m| now.as_second() - m.as_second() <= grace_secs)
                .collect()
        }
        Misfire::RunOnce => missed.into_iter().last().into_iter().collect(),
        Misfire::Backfill => {
            let keep = backfill_limit.max(1) as usize;
            let skip = missed.len().saturating_sub(keep);
            missed.into_iter().skip(skip).collect()
        }
    };
    (ticks, following)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_report_at_two_in_utc() {
        let c = CronSpec::parse("0 2 * * *", "UTC").unwrap();
        assert_eq!(
            c.next_after(ts("2026-11-23T05:00:00Z")),
            Some(ts("2026-11-24T02:00:00Z"))
        );
    }

    #[test]
    fn monthly_invoices_follow_new_york_across_dst() {
        // 06:00 in New York is 11:00 UTC in winter (EST) and 10:00 UTC in summer (EDT).
        let c = CronSpec::parse("0 6 1 * *", "America/New_York").unwrap();
        let next = c.upcoming(ts("2026-02-15T00:00:00Z"), 2);
        assert_eq!(
            next,
            vec![ts("2026-03-01T11:00:00Z"), ts("2026-04-01T10:00:00Z")]
        );
    }

    #[test]
    fn a_skipped_local_hour_still_fires_once() {
        // 02:30 does not exist on 2026-03-08 in New York; the job must not be lost or doubled.
        let c = CronSpec::parse("30 2 * * *", "America/New_York").unwrap();
        let ticks = c.upcoming(ts("2026-03-07T12:00:00Z"), 3);
        assert_eq!(ticks.len(), 3);
        let days: Vec<i8> = ticks
            .iter()
            .map(|t| t.to_zoned(TimeZone::get("America/New_York").unwrap()).day())
            .collect();
        assert_eq!(days, vec![8, 9, 10], "{ticks:?}");
    }

    #[test]
    fn six_fields_have_seconds_and_bad_input_is_refused() {
        let c = CronSpec::parse("*/15 * * * * *", "UTC").unwrap();
        assert_eq!(
            c.next_after(ts("2026-01-01T00:00:01Z")),
            Some(ts("2026-01-01T00:00:15Z"))
        );
        assert!(CronSpec::parse("* * *", "UTC").is_err());
        for (expr, frequent) in [
            ("* * * * * *", true),
            ("*/30 * * * * *", true),
            ("0,1 0 1 1 *", false),
            ("5,6 0 3 * * *", true),
            ("0 * * * * *", false),
            ("* * * * *", false),
        ] {
            let c = CronSpec::parse(expr, "UTC").unwrap();
            assert_eq!(c.more_than_once_a_minute(), frequent, "{expr}");
        }
        assert!(CronSpec::parse("61 * * * *", "UTC").is_err());
        assert!(CronSpec::parse("0 2 * * *", "Mars/Olympus").is_err());
        assert!(CronSpec::parse("0 0 1 1 * 2030", "UTC").is_err());
    }

    #[test]
    fn messages_name_the_field_and_its_rule() {
        let e = CronSpec::parse("61 * * * *", "UTC").unwrap_err();
        assert_eq!(e.field, "cron");
        assert!(
            e.message.starts_with("minute must be 0–59"),
            "{}",
            e.message
        );
        assert!(e.message.ends_with("`61` is not"), "{}", e.message);
        let e = CronSpec::parse("0 0 * 13 *", "UTC").unwrap_err();
        assert!(
            e.message.starts_with("month must be 1–12 or JAN–DEC"),
            "{}",
            e.message
        );
        let e = CronSpec::parse("0 0 0 * * 9", "UTC").unwrap_err();
        assert!(
            e.message.starts_with("day of week must be 0–7"),
            "{}",
            e.message
        );
        let e = CronSpec::parse("99 0 0 * * *", "UTC").unwrap_err();
        assert!(
            e.message.starts_with("second must be 0–59"),
            "{}",
            e.message
        );
        let e = CronSpec::parse("* * *", "UTC").unwrap_err();
        assert!(e.message.contains("not 3"), "{}", e.message);
    }

    #[test]
    fn the_schema_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(&cron_pattern()).unwrap();
        let valid = [
            "* * * * *",
            "0 2 * * *",
            "*/15 * * * * *",
            "0 0 1,15 * MON-FRI",
            "0 9-17/2 * jan-mar mon",
            "05 04 * * 0",
            "0 0 L * *",
            "0 0 LW * *",
            "0 0 15W * *",
            "0 0 ? * 5L",
            "0 0 * * 1#2",
            "0 0 1 1 7",
            "59 59 23 31 12 7",
            "0 0 * * SUN,sat",
        ];
        for e in valid {
            assert!(CronSpec::parse(e, "UTC").is_ok(), "{e} should parse");
            assert!(pattern.is_match(e), "{e} should match the pattern");
        }
        let invalid = [
            "61 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5/10 * * * *",
            "0 0 L * 1W",
            "x * * * *",
            "* * * *",
            "* * * * * * *",
            "0 0 * * 1#6",
            "? * * * *",
            "@daily",
        ];
        for e in invalid {
            assert!(CronSpec::parse(e, "UTC").is_err(), "{e} should not parse");
            assert!(!pattern.is_match(e), "{e} should not match the pattern");
        }
    }

    #[test]
    fn a_pattern_no_date_matches_is_refused() {
        for expr in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 11 *"] {
            let e = CronSpec::parse(expr, "UTC").unwrap_err();
            assert_eq!(e.field, "cron");
            assert!(e.message.contains("never fires"), "{e}");
        }
        // Rare is not never: 29 February, and the 30th of any month with a weekday (either
        // field matching is enough).
        assert!(CronSpec::parse("0 0 29 2 *", "UTC").is_ok());
        assert!(CronSpec::parse("0 0 30 2 1", "UTC").is_ok());
    }

    #[test]
    fn misfire_policies() {
        let c = CronSpec::parse("0 * * * *", "UTC").unwrap();
        let next = ts("2026-01-01T00:00:00Z");
        let now = ts("2026-01-01T05:30:00Z");
        let (run_once, following) = due_ticks(&c, next, now, Misfire::RunOnce, 0, 60);
        assert_eq!(run_once, vec![ts("2026-01-01T05:00:00Z")]);
        assert_eq!(following, Some(ts("2026-01-01T06:00:00Z")));
        let (skip, _) = due_ticks(&c, next, now, Misfire::Skip, 0, 60);
        assert!(skip.is_empty());
        let (backfill, _) = due_ticks(&c, next, now, Misfire::Backfill, 3, 60);
        assert_eq!(
            backfill,
            vec![
                ts("2026-01-01T03:00:00Z"),
                ts("2026-01-01T04:00:00Z"),
                ts("2026-01-01T05:00:00Z")
            ]
        );
        let (on_time, _) = due_ticks(
            &c,
            ts("2026-01-01T05:00:00Z"),
            ts("2026-01-01T05:00:01Z"),
            Misfire::Skip,
            0,
            60,
        );
        assert_eq!(on_time.len(), 1);
    }
}
