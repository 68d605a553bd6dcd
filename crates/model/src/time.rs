//! Calendar values of the contract: dates (`YYYY-MM-DD`), RFC 3339
//! timestamps and quarters (`YYYY-Qn`).
//!
//! Parsing is strict on purpose: the spec makes an impossible date a
//! `SCHEMA_INVALID` document, so `2026-02-30`, `2026-7-1` or a timestamp
//! without an offset never parse. Dates are days since 1970-01-01 (the Avro
//! `date` logical type); timestamps are milliseconds since the epoch in UTC
//! (`timestamp-millis`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a calendar value did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not {expected}")]
pub struct ParseError {
    input: String,
    expected: &'static str,
}

impl ParseError {
    fn new(input: &str, expected: &'static str) -> Self {
        Self {
            input: input.chars().take(64).collect(),
            expected,
        }
    }
}

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A calendar date, stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    /// The date `days` after 1970-01-01 (negative: before).
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    /// Days since 1970-01-01.
    pub const fn days(self) -> i32 {
        self.0
    }

    /// The date of a valid year, month and day; `None` if it does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        i32::try_from(days_from_civil(i64::from(year), month, day))
            .ok()
            .map(Self)
    }

    /// Year, month (1-12) and day (1-31).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// The quarter that contains this date.
    pub fn quarter(self) -> Quarter {
        let (year, month, _) = self.ymd();
        Quarter::of_month(year, month)
    }

    /// True when this is the first day of a month.
    pub fn is_first_of_month(self) -> bool {
        self.ymd().2 == 1
    }

    /// True when this is the first day of a calendar quarter.
    pub fn is_first_of_quarter(self) -> bool {
        let (_, month, day) = self.ymd();
        day == 1 && (month - 1) % 3 == 0
    }
}

impl FromStr for Date {
    type Err = ParseError;

    /// Parses exactly `YYYY-MM-DD` (years 0001 to 9999), rejecting dates
    /// that do not exist.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new(s, "a date of the form YYYY-MM-DD");
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let year = digits(&b[0..4]).ok_or_else(err)?;
        let month = digits(&b[5..7]).ok_or_else(err)?;
        let day = digits(&b[8..10]).ok_or_else(err)?;
        if year == 0 {
            return Err(err());
        }
        Date::from_ymd(year as i32, month, day).ok_or_else(err)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// An instant, stored as milliseconds since the Unix epoch (UTC), with the
/// UTC offset it was written with (so that it prints as it was written).
///
/// Equality compares both; [`Timestamp::millis`] alone is the instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp(i64, i16);

impl Timestamp {
    /// The instant `millis` milliseconds after the epoch, in UTC.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis, 0)
    }

    /// The instant `millis`, written with a UTC offset of `minutes`
    /// (clamped to the ±23:59 that RFC 3339 can write).
    pub fn with_offset_minutes(self, minutes: i32) -> Self {
        Self(self.0, minutes.clamp(-1439, 1439) as i16)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The UTC offset it was written with, in minutes (`+08:00` is 480).
    pub const fn offset_minutes(self) -> i32 {
        self.1 as i32
    }

    /// The UTC date of this instant.
    pub fn utc_date(self) -> Date {
        let days = self.0.div_euclid(MILLIS_PER_DAY);
        Date(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self(now, 0)
    }
}

impl FromStr for Timestamp {
    type Err = ParseError;

    /// Parses an RFC 3339 timestamp with an offset:
    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`. Fractions below a
    /// millisecond are truncated.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            ParseError::new(
                s,
                "an RFC 3339 timestamp with an offset (e.g. 2026-07-15T08:00:00Z)",
            )
        };
        let b = s.as_bytes();
        if b.len() < 20 || !matches!(b[10], b'T' | b't') {
            return Err(err());
        }
        let date: Date = s[..10].parse().map_err(|_| err())?;
        if b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let hour = digits(&b[11..13]).ok_or_else(err)?;
        let minute = digits(&b[14..16]).ok_or_else(err)?;
        let second = digits(&b[17..19]).ok_or_else(err)?;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err());
        }
        let mut rest = &b[19..];
        let mut millis = 0u32;
        if let [b'.', tail @ ..] = rest {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(err());
            }
            for (i, c) in tail[..n.min(3)].iter().enumerate() {
                millis += u32::from(c - b'0') * [100, 10, 1][i];
            }
            rest = &tail[n..];
        }
        let offset_minutes: i64 = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = digits(&[*h1, *h2]).ok_or_else(err)?;
                let om = digits(&[*m1, *m2]).ok_or_else(err)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let minutes = i64::from(oh * 60 + om);
                if *sign == b'-' { -minutes } else { minutes }
            }
            _ => return Err(err()),
        };
        let seconds = i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
        Ok(Self(
            i64::from(date.days()) * MILLIS_PER_DAY + seconds * 1000 + i64::from(millis),
            offset_minutes as i16,
        ))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with the offset it was written with (`Z` for UTC), and
    /// milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = Timestamp::from_millis(self.0.saturating_add(i64::from(self.1) * 60_000));
        let date = local.utc_date();
        let in_day = local.0 - i64::from(date.days()) * MILLIS_PER_DAY;
        let (secs, ms) = (in_day / 1000, in_day % 1000);
        write!(
            f,
            "{date}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if ms != 0 {
            write!(f, ".{ms:03}")?;
        }
        match self.1 {
            0 => f.write_str("Z"),
            m => write!(
                f,
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.unsigned_abs() / 60,
                m.unsigned_abs() % 60
            ),
        }
    }
}

/// A calendar quarter, `YYYY-Qn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quarter {
    year: i32,
    q: u8,
}

impl Quarter {
    /// The quarter `q` (1-4) of `year`, if `q` is in range.
    pub fn new(year: i32, q: u8) -> Option<Self> {
        (1..=4).contains(&q).then_some(Self { year, q })
    }

    /// The quarter that contains `month` (1-12) of `year`.
    pub fn of_month(year: i32, month: u32) -> Self {
        Self {
            year,
            q: ((month - 1) / 3) as u8 + 1,
        }
    }

    /// A running number of quarters (`year * 4 + q - 1`): consecutive
    /// quarters have consecutive indexes.
    pub fn index(self) -> i64 {
        i64::from(self.year) * 4 + i64::from(self.q - 1)
    }

    /// The quarter with the given running number (see [`Quarter::index`]).
    pub fn from_index(index: i64) -> Self {
        Self {
            year: index.div_euclid(4) as i32,
            q: index.rem_euclid(4) as u8 + 1,
        }
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The quarter of the year, 1 to 4.
    pub fn number(self) -> u8 {
        self.q
    }

    /// The last day of the quarter.
    pub fn last_day(self) -> Date {
        let next = Quarter::from_index(self.index() + 1);
        let first_of_next = days_from_civil(i64::from(next.year), u32::from(next.q) * 3 - 2, 1);
        Date((first_of_next - 1) as i32)
    }
}

impl FromStr for Quarter {
    type Err = ParseError;

    /// Parses exactly `YYYY-Qn` with `n` from 1 to 4.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new(s, "a quarter of the form YYYY-Qn (n from 1 to 4)");
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || b[5] != b'Q' {
            return Err(err());
        }
        let year = digits(&b[0..4]).ok_or_else(err)?;
        let q = digits(&b[6..7]).ok_or_else(err)?;
        Quarter::new(year as i32, q as u8).ok_or_else(err)
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-Q{}", self.year, self.q)
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    // The 400-year era in i64 (days before 0000-03-01 need its floor), the
    // day within it in u32: there the divisions by constants need no sign
    // fix-ups, and the rules convert every line's date.
    let era = z.div_euclid(146_097);
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = i64::from(yoe) + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

macro_rules! string_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_serde!(Date, Timestamp, Quarter);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_parse_strictly() {
        assert_eq!("1970-01-01".parse::<Date>().unwrap().days(), 0);
        assert_eq!(
            "2024-02-29".parse::<Date>().unwrap().to_string(),
            "2024-02-29"
        );
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-7-1",
            "2026-07-01T",
            "0000-01-01",
            "２０２６-01-01",
            "",
            "2026/07/01",
            "2026-07-1a",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn quarters() {
        for (month, q) in [
            (1, "2026-Q1"),
            (3, "2026-Q1"),
            (4, "2026-Q2"),
            (12, "2026-Q4"),
        ] {
            assert_eq!(Quarter::of_month(2026, month).to_string(), q);
        }
        let q: Quarter = "2026-Q3".parse().unwrap();
        assert_eq!(q.last_day().to_string(), "2026-09-30");
        assert_eq!(
            "2027-Q4".parse::<Quarter>().unwrap().last_day().to_string(),
            "2027-12-31"
        );
        assert_eq!(
            "2026-Q1".parse::<Quarter>().unwrap().last_day().to_string(),
            "2026-03-31"
        );
        assert_eq!(Quarter::from_index(q.index() + 2).to_string(), "2027-Q1");
        assert_eq!(
            "2026-11-15".parse::<Date>().unwrap().quarter().to_string(),
            "2026-Q4"
        );
        for bad in [
            "2027-Q5", "2027-Q0", "2027Q1", "2027-q1", "27-Q1", "2027-Q1 ", "2027-Q11",
        ] {
            assert!(bad.parse::<Quarter>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn alignment() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert!(d("2026-10-01").is_first_of_quarter());
        assert!(!d("2026-11-01").is_first_of_quarter());
        assert!(d("2026-11-01").is_first_of_month());
        assert!(!d("2026-11-02").is_first_of_month());
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| s.parse::<Timestamp>();
        assert_eq!(t("1970-01-01T00:00:00Z").unwrap().millis(), 0);
        assert_eq!(t("1970-01-01T08:00:00+08:00").unwrap().millis(), 0);
        assert_eq!(t("1970-01-01T00:00:01.5Z").unwrap().millis(), 1500);
        assert_eq!(t("1970-01-01T00:00:00.1239z").unwrap().millis(), 123);
        // The UTC date of a timestamp written in another zone.
        let ts = t("2026-07-01T02:00:00+08:00").unwrap();
        assert_eq!(ts.utc_date().to_string(), "2026-06-30");
        assert_eq!(ts.to_string(), "2026-07-01T02:00:00+08:00");
        assert_eq!(ts.offset_minutes(), 480);
        assert_eq!(
            t("2026-07-01T02:00:00-03:30").unwrap().to_string(),
            "2026-07-01T02:00:00-03:30"
        );
        for bad in [
            "yesterday",
            "2026-07-15T08:00:00",
            "2026-07-15 08:00:00Z",
            "2026-07-15T24:00:00Z",
            "2026-07-15T08:00:00+0800",
            "2026-07-15T08:00:00.Z",
            "2026-02-30T08:00:00Z",
            "2026-07-15T08:00Z",
        ] {
            assert!(t(bad).is_err(), "{bad} should not parse");
        }
    }

    /// Day count -> calendar date -> day count is the identity, and every
    /// date it gives exists, on every day from a thousand before 0000-03-01
    /// to well past the year 9999; and at the ends of the i32 range.
    #[test]
    fn calendar_conversion_round_trips() {
        for z in (-719_468 - 1000..3_000_000).chain([i64::from(i32::MAX), i64::from(i32::MIN)]) {
            let (y, m, d) = civil_from_days(z);
            assert!(
                (1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d),
                "day {z}: {y}-{m}-{d}"
            );
            assert_eq!(
                days_from_civil(i64::from(y), m, d),
                z,
                "day {z}: {y}-{m}-{d}"
            );
        }
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(civil_from_days(-719_469), (0, 2, 29));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    proptest! {
        #[test]
        fn date_text_round_trips(days in -719_162i32..2_932_896) {
            let d = Date::from_days(days);
            prop_assert_eq!(d.to_string().parse::<Date>().unwrap(), d);
        }

        #[test]
        fn timestamp_text_round_trips(ms in -62_135_596_700_000i64..253_402_200_799_999, offset in -1439i32..1440) {
            let t = Timestamp::from_millis(ms).with_offset_minutes(offset);
            prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }

        #[test]
        fn date_is_inside_its_quarter(days in -719_162i32..2_932_896) {
            let d = Date::from_days(days);
            let q = d.quarter();
            prop_assert!(d <= q.last_day());
            prop_assert!(d > Quarter::from_index(q.index() - 1).last_day());
        }
    }
}
