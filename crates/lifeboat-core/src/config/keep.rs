//! Keep rules: which snapshots of a target retention keeps.
//!
//! Written `last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N,within=DURATION`
//! (any subset), each with the meaning restic gives its `--keep-*` flag,
//! and decided exactly as restic (0.16 and later) decides them, so that a
//! repository pruned by either tool keeps the same snapshots:
//!
//! - Snapshots are taken newest first. `last=N` keeps the N newest.
//!   `hourly=N` keeps the newest snapshot of each of the N newest hours
//!   that have one, and so on for days, ISO weeks, months and years, each
//!   read on the snapshot's own clock (the offset it was taken with).
//! - A rule with counts left when it reaches the oldest snapshot keeps
//!   that one too: a history shorter than the rules ask for is kept whole.
//! - `within=DURATION` keeps every snapshot taken less than DURATION
//!   before the newest one (newest not in the future). DURATION is made
//!   of numbers with units `y`, `m` (months), `w`, `d` and `h`: `30d`,
//!   `2w`, `1y6m`; years, months and days count on the calendar as
//!   restic's do (31 March less a month is 3 March, not 28 February).
//!
//! A rule string that does not parse, an unknown or repeated key, or rules
//! that would keep nothing (`last=0` alone) are errors naming the value:
//! a rule never means "keep nothing".

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::Config;
use crate::engine::MountKind;
use crate::error::{Error, Result};

/// The label, on a volume, that sets its keep rules.
pub const KEEP_LABEL: &str = "lifeboat.keep";

/// Keep rules: how many snapshots of each kind to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeepRules {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
}

/// A span of calendar time: `within=1y6m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

/// Why a snapshot is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepReason {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within(Within),
    /// The newest snapshot of its target: never removed.
    Newest,
    /// The newest snapshot whose restore drill passed: never removed.
    Drilled,
    /// The last copy of a volume `lifeboat prune` removed (tagged
    /// `pruned`).
    Pruned,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Last => f.write_str("last snapshot"),
            Self::Hourly => f.write_str("hourly snapshot"),
            Self::Daily => f.write_str("daily snapshot"),
            Self::Weekly => f.write_str("weekly snapshot"),
            Self::Monthly => f.write_str("monthly snapshot"),
            Self::Yearly => f.write_str("yearly snapshot"),
            Self::Within(within) => write!(f, "within {within}"),
            Self::Newest => f.write_str("newest snapshot of the target (never removed)"),
            Self::Drilled => f.write_str("newest snapshot with a passed restore drill"),
            Self::Pruned => f.write_str("last copy of a pruned volume (tagged pruned)"),
        }
    }
}

impl KeepReason {
    /// Whether this is one of lifeboat's own safety rules rather than a
    /// rule the user wrote.
    pub fn is_safety(self) -> bool {
        matches!(self, Self::Newest | Self::Drilled | Self::Pruned)
    }
}

/// When a snapshot was taken: the instant, and the wall clock it was
/// taken on (which the hourly to yearly rules read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TakenAt {
    pub instant: Timestamp,
    pub wall: DateTime,
    offset: Offset,
}

impl TakenAt {
    /// `instant` as a clock `offset` from UTC showed it.
    pub fn new(instant: Timestamp, offset: Offset) -> Self {
        Self {
            instant,
            wall: offset.to_datetime(instant),
            offset,
        }
    }

    /// The time a snapshot records, on the clock it records.
    pub fn of(time: &jiff::Zoned) -> Self {
        Self::new(time.timestamp(), time.offset())
    }
}

impl KeepRules {
    /// Whether these rules keep no snapshot at all: never valid.
    pub fn keeps_nothing(&self) -> bool {
        *self == Self::default()
    }

    /// Decides which of a target's snapshots the rules keep. `taken` is
    /// newest first; the answer, in the same order, holds why each one is
    /// kept, and nothing for one to remove. `now` decides which snapshots
    /// are in the future (they do not count as the newest for `within`).
    pub fn apply(&self, taken: &[TakenAt], now: Timestamp) -> Vec<Vec<KeepReason>> {
        self.apply_in(taken, now, &TimeZone::system())
    }

    /// [`KeepRules::apply`] on a host whose clock shows `local`: `within`
    /// counts back on the local calendar, summer time included, when the
    /// newest snapshot was taken on this host's clock, as restic does.
    pub fn apply_in(
        &self,
        taken: &[TakenAt],
        now: Timestamp,
        local: &TimeZone,
    ) -> Vec<Vec<KeepReason>> {
        struct Bucket {
            left: u32,
            last: Option<i64>,
            reason: KeepReason,
            of: fn(usize, &DateTime) -> i64,
        }
        let hour = |_: usize, t: &DateTime| ymd(t) * 100 + i64::from(t.hour());
        let mut buckets = [
            Bucket {
                left: self.last,
                last: None,
                reason: KeepReason::Last,
                of: |nr, _| nr as i64,
            },
            Bucket {
                left: self.hourly,
                last: None,
                reason: KeepReason::Hourly,
                of: hour,
            },
            Bucket {
                left: self.daily,
                last: None,
                reason: KeepReason::Daily,
                of: |_, t| ymd(t),
            },
            Bucket {
                left: self.weekly,
                last: None,
                reason: KeepReason::Weekly,
                of: |_, t| {
                    let week = t.date().iso_week_date();
                    i64::from(week.year()) * 100 + i64::from(week.week())
                },
            },
            Bucket {
                left: self.monthly,
                last: None,
                reason: KeepReason::Monthly,
                of: |_, t| i64::from(t.year()) * 100 + i64::from(t.month()),
            },
            Bucket {
                left: self.yearly,
                last: None,
                reason: KeepReason::Yearly,
                of: |_, t| i64::from(t.year()),
            },
        ];
        // Newer than this, a snapshot is kept by `within`; with no newest
        // snapshot in the past, every one is.
        let newest = taken.iter().find(|t| t.instant < now);
        let within_since = self
            .within
            .map(|within| newest.map(|newest| within.before(newest, local)));
        let oldest = taken.len().saturating_sub(1);
        taken
            .iter()
            .enumerate()
            .map(|(nr, t)| {
                let mut reasons = Vec::new();
                if let (Some(within), Some(since)) = (self.within, within_since)
                    && since.is_none_or(|since| t.instant > since)
                {
                    reasons.push(KeepReason::Within(within));
                }
                for bucket in buckets.iter_mut().filter(|b| b.left > 0) {
                    let value = (bucket.of)(nr, &t.wall);
                    if bucket.last != Some(value) || nr == oldest {
                        bucket.last = Some(value);
                        bucket.left -= 1;
                        reasons.push(bucket.reason);
                    }
                }
                reasons
            })
            .collect()
    }
}

/// `YYYYMMDD` of a wall-clock time.
fn ymd(t: &DateTime) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

impl Within {
    /// The instant this span before `newest`, counted on its wall clock:
    /// years, months and days on the calendar (a day past the end of a
    /// month runs into the next, as restic counts), then hours. The
    /// calendar is `local`'s when the newest snapshot was taken on it
    /// (across a change to or from summer time the hour stays the same on
    /// the clock), its own fixed offset's otherwise.
    fn before(self, newest: &TakenAt, local: &TimeZone) -> Timestamp {
        let zone = if local.to_offset(newest.instant) == newest.offset {
            local.clone()
        } else {
            TimeZone::fixed(newest.offset)
        };
        let wall = newest.wall;
        let months = i64::from(wall.year()) * 12 + i64::from(wall.month())
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        // Spans reaching before the calendar's start reach before every
        // snapshot.
        let day = i16::try_from(year)
            .ok()
            .and_then(|year| Date::new(year, month as i8, 1).ok())
            .and_then(|first| {
                let days = i64::from(wall.day()) - 1 - i64::from(self.days);
                first
                    .checked_add(jiff::Span::new().try_days(days).ok()?)
                    .ok()
            });
        let Some(day) = day else {
            return Timestamp::MIN;
        };
        zone.to_ambiguous_timestamp(day.to_datetime(wall.time()))
            .compatible()
            .ok()
            .and_then(|since| {
                since
                    .checked_sub(SignedDuration::from_hours(i64::from(self.hours)))
                    .ok()
            })
            .unwrap_or(Timestamp::MIN)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "m"),
            (self.days, "d"),
            (self.hours, "h"),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration {s:?}: use numbers with units y, m (months), w, d and h, such as 30d, 2w or 1y6m"
            )
        };
        let mut within = Self::default();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let n: i32 = rest[..digits].parse().map_err(|_| bad())?;
            let mut chars = rest[digits..].chars();
            let (field, n) = match chars.next() {
                Some('y') => (&mut within.years, n),
                Some('m') => (&mut within.months, n),
                Some('w') => (&mut within.days, n.checked_mul(7).ok_or_else(bad)?),
                Some('d') => (&mut within.days, n),
                Some('h') => (&mut within.hours, n),
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(bad)?;
            rest = chars.as_str();
        }
        if within == Self::default() {
            return Err(format!("{} (it is zero)", bad()));
        }
        Ok(within)
    }
}

impl FromStr for KeepRules {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| Error::BadRequest(format!("invalid keep rules {s:?}: {why}"));
        let mut rules = Self::default();
        let mut seen = Vec::new();
        if s.trim().is_empty() {
            return Err(bad(
                "no rule: write KEY=VALUE pairs such as last=7,daily=14,weekly=8".to_string(),
            ));
        }
        for part in s.split(',') {
            let part = part.trim();
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(format!("{part:?} is not KEY=VALUE")));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(bad(format!("{key} is given twice")));
            }
            seen.push(key);
            let count = || {
                value.parse::<u32>().map_err(|_| {
                    bad(format!(
                        "{key}={value}: the count must be a whole number, 0 or more"
                    ))
                })
            };
            match key {
                "last" => rules.last = count()?,
                "hourly" => rules.hourly = count()?,
                "daily" => rules.daily = count()?,
                "weekly" => rules.weekly = count()?,
                "monthly" => rules.monthly = count()?,
                "yearly" => rules.yearly = count()?,
                "within" => {
                    rules.within = Some(value.parse().map_err(|e| bad(format!("within: {e}")))?);
                }
                other => {
                    return Err(bad(format!(
                        "unknown key {other:?}: use last, hourly, daily, weekly, monthly, yearly or within"
                    )));
                }
            }
        }
        if rules.keeps_nothing() {
            return Err(bad(
                "these rules keep no snapshot at all; to remove a target's snapshots, remove them by id"
                    .to_string(),
            ));
        }
        Ok(rules)
    }
}

impl fmt::Display for KeepRules {
    /// The rules as they are written, in a fixed order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (key, n) in [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ] {
            if n > 0 {
                parts.push(format!("{key}={n}"));
            }
        }
        if let Some(within) = self.within {
            parts.push(format!("within={within}"));
        }
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for KeepRules {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<KeepRules> for String {
    fn from(rules: KeepRules) -> Self {
        rules.to_string()
    }
}

/// The keep rules of a target, and where they were set: the label
/// [`KEEP_LABEL`] among the volume's `labels` wins over its section of the
/// configuration file, which wins over the file's `[defaults]`. `Ok(None)`:
/// no rule, and nothing may be guessed. A label that does not parse is an
/// error naming the volume (a bad file is refused when it is loaded).
pub fn keep_rules(
    kind: MountKind,
    name: &str,
    labels: &BTreeMap<String, String>,
    labels_from: &str,
    config: &Config,
) -> Result<Option<(KeepRules, String)>> {
    if let Some(value) = labels.get(KEEP_LABEL) {
        let rules = value
            .parse::<KeepRules>()
            .map_err(|e| Error::BadRequest(format!("label {KEEP_LABEL} on volume {name}: {e}")))?;
        return Ok(Some((
            rules,
            format!("label {KEEP_LABEL}={value} on volume {name}{labels_from}"),
        )));
    }
    let Some((section, table)) = config.section(kind) else {
        return Ok(None);
    };
    if let Some(rules) = table.get(name).and_then(|t| t.keep) {
        return Ok(Some((
            rules,
            format!("configuration file: [{section}.\"{name}\"] keep = \"{rules}\""),
        )));
    }
    Ok(config.defaults.keep.map(|rules| {
        (
            rules,
            format!("configuration file: [defaults] keep = \"{rules}\""),
        )
    }))
}

#[cfg(test)]
mod tests;
