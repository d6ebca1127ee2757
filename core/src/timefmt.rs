//! Calendar arithmetic and RFC 3339 text for UTC times, without a date crate: the log line stamps,
//! the introspection JSON, SigV4 dates and credential expiry times all use it.
//!
//! Pure (the core crate is `no_std`).

use alloc::format;
use alloc::string::String;

/// How [`rfc3339`] writes the fraction of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// None: `2026-11-23T16:08:39Z`.
    None,
    /// Always three digits: `2026-11-23T16:08:39.120Z`.
    Millis,
    /// Nanoseconds with trailing zeros dropped, none at all for a whole second (Go's
    /// `time.RFC3339Nano`): `2026-11-23T16:08:39.12Z`.
    Trimmed,
}

/// Formats `unix_secs` seconds plus `nanos` (below 1e9) since the Unix epoch as RFC 3339 in UTC.
pub fn rfc3339(unix_secs: i64, nanos: u32, fraction: Fraction) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    match fraction {
        Fraction::None => {}
        Fraction::Millis => s.push_str(&format!(".{:03}", nanos / 1_000_000)),
        Fraction::Trimmed if nanos != 0 => {
            let digits = format!("{nanos:09}");
            s.push('.');
            s.push_str(digits.trim_end_matches('0'));
        }
        Fraction::Trimmed => {}
    }
    s.push('Z');
    s
}

/// Converts days since 1970-01-01 into a (year, month 1..=12, day 1..=31) civil date in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // In range by construction: 1..=31 and 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Converts a civil date into days since 1970-01-01 (inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants_in_each_fraction_style() {
        assert_eq!(rfc3339(0, 0, Fraction::None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(0, 0, Fraction::Millis), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(0, 0, Fraction::Trimmed), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 123_456_000, Fraction::Trimmed),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(1_709_251_199, 999_999_999, Fraction::Millis),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339(951_782_400, 0, Fraction::None),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(rfc3339(-1, 0, Fraction::None), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(-62_135_596_800, 0, Fraction::None),
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1_000_000i64, -1, 0, 1, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    proptest! {
        #[test]
        fn every_day_round_trips_and_is_a_real_date(days in -3_000_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            prop_assert!((y2, m2, d2) > (y, m, d));
        }
    }
}
