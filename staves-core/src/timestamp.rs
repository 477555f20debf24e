//! RFC 3339 timestamps in UTC with whole seconds (`YYYY-MM-DDTHH:MM:SSZ`), as image configs, annotations and SBOMs
//! carry them. Calendar arithmetic is the `time` crate's.
//!
//! Reproducible images depend on these exact bytes: the format never changes with the `time` version or features.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` seconds since the epoch (negative: before 1970).
///
/// A time outside the years `time` represents (-9999 to 9999 by default) is clamped to the nearest one it does;
/// such times are not valid RFC 3339 anyway.
pub(crate) fn rfc3339(secs: i64) -> String {
    let first = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let last = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    // Cannot fail after the clamp; the epoch keeps this total without a panic path.
    let when = OffsetDateTime::from_unix_timestamp(secs.clamp(first, last))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    )
}

/// Seconds since the epoch of an RFC 3339 timestamp (any offset, fractions dropped); `None` when it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_times_give_these_exact_bytes() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (59, "1970-01-01T00:00:59Z"),
            (946_684_800, "2000-01-01T00:00:00Z"),
            // Leap days: 2000 (divisible by 400) and 2024; 2100 is not a leap year.
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_709_251_200, "2024-03-01T00:00:00Z"),
            (4_107_456_000, "2100-02-28T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (1_795_996_800 + 3_723, "2026-11-30T01:02:03Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(secs), text, "{secs}");
            assert_eq!(parse_rfc3339(text), Some(secs), "{text}");
        }
    }

    #[test]
    fn parsing_takes_offsets_and_refuses_what_is_not_a_timestamp() {
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.9Z"), Some(1));
        for bad in [
            "",
            "1970-01-01",
            "1970-01-01T00:00:00",
            "2026-02-30T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_beyond_the_calendar_are_clamped_not_a_panic() {
        assert_eq!(
            rfc3339(i64::MAX),
            rfc3339(253_402_300_799 + 1_000_000_000_000)
        );
        assert!(rfc3339(i64::MIN).ends_with("-01-01T00:00:00Z"));
    }
}
