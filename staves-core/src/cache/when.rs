//! Dates for `staves cache`: the cut-off of `prune --older-than`, and how times are shown. Calendar arithmetic is
//! the `time` crate's.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time, macros::format_description};

/// A `--older-than` value that is neither a date nor an age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{text}' is not a date: give YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an age such as 30d or 12h"
)]
pub struct DateError {
    /// What was given.
    pub text: String,
}

/// The unix time `text` names: a date (`YYYY-MM-DD`, midnight UTC), an RFC 3339 time (`2026-11-30T12:00:00Z`), or an
/// age before `now` (`30d`, `12h`, `45m`).
pub fn parse_cutoff(text: &str, now: u64) -> Result<u64, DateError> {
    let bad = || DateError {
        text: text.to_owned(),
    };
    for (suffix, unit) in [("d", 86_400u64), ("h", 3_600), ("m", 60)] {
        if let Some(n) = text
            .strip_suffix(suffix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            let n: u64 = n.parse().map_err(|_| bad())?;
            return Ok(now.saturating_sub(n.saturating_mul(unit)));
        }
    }
    let when = if text.contains('T') {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?
    } else {
        Date::parse(text, format_description!("[year]-[month]-[day]"))
            .map_err(|_| bad())?
            .with_time(Time::MIDNIGHT)
            .assume_utc()
    };
    u64::try_from(when.unix_timestamp()).map_err(|_| bad())
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix time, for listings.
pub fn format_minutes(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_ages() {
        assert_eq!(parse_cutoff("1970-01-02", 0), Ok(86_400));
        assert_eq!(parse_cutoff("2026-11-30", 0), Ok(1_795_996_800));
        assert_eq!(
            parse_cutoff("2026-11-30T01:02:03Z", 0),
            Ok(1_795_996_800 + 3_723)
        );
        assert_eq!(parse_cutoff("2d", 200_000), Ok(200_000 - 172_800));
        assert_eq!(parse_cutoff("12h", 100), Ok(0));
        assert_eq!(parse_cutoff("5m", 1_000), Ok(700));
        for bad in [
            "",
            "d",
            "-1d",
            "2026-13-01",
            "2026-02-30",
            "2026-11-30T25:00:00Z",
            "yesterday",
            "1969-12-31",
        ] {
            assert!(parse_cutoff(bad, 0).is_err(), "{bad}");
        }
        assert!(
            parse_cutoff("x", 0)
                .unwrap_err()
                .to_string()
                .contains("'x' is not a date")
        );
    }

    #[test]
    fn minutes() {
        assert_eq!(format_minutes(0), "1970-01-01 00:00");
        assert_eq!(format_minutes(1_795_996_800 + 3_723), "2026-11-30 01:02");
    }
}
