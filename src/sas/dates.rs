//! Dates in SAS tokens.
//!
//! Azure accepts `st`/`se` in the ISO 8601 forms `YYYY-MM-DD`, `YYYY-MM-DDThh:mmTZD`,
//! `YYYY-MM-DDThh:mm:ssTZD` and `YYYY-MM-DDThh:mm:ss.fffffffTZD`, where TZD is `Z` or an
//! offset such as `+02:00`. We parse all of them (to UTC) and always write
//! `YYYY-MM-DDThh:mm:ssZ`, the form the SDKs sign.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// `YYYY-MM-DDThh:mm:ssZ`, the form generated tokens carry.
const OUT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Forms ending in a literal `Z`, parsed as UTC.
const UTC_FORMS: &[&[FormatItem<'static>]] = &[
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]Z"),
    format_description!("[year]-[month]-[day]T[hour]:[minute]Z"),
];

/// Forms with an explicit UTC offset.
const OFFSET_FORMS: &[&[FormatItem<'static>]] = &[
    format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    ),
    format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory]:[offset_minute]"
    ),
    format_description!(
        "[year]-[month]-[day]T[hour]:[minute][offset_hour sign:mandatory]:[offset_minute]"
    ),
];

const DATE_ONLY: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Parses a SAS date in any form Azure accepts, returning it in UTC.
/// A bare date means midnight UTC. Returns `None` if it is none of those forms.
pub fn parse_sas_date(s: &str) -> Option<OffsetDateTime> {
    for f in UTC_FORMS {
        if let Ok(p) = PrimitiveDateTime::parse(s, f) {
            return Some(p.assume_utc());
        }
    }
    for f in OFFSET_FORMS {
        if let Ok(t) = OffsetDateTime::parse(s, f) {
            return Some(t.to_offset(UtcOffset::UTC));
        }
    }
    Date::parse(s, DATE_ONLY)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// Formats a time as `YYYY-MM-DDThh:mm:ssZ` in UTC (sub-seconds dropped, as the SDKs do).
pub fn format_sas_date(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(OUT)
        .expect("a UTC date with a 4-digit year always formats")
}

/// Whether `s` looks like a service version, `YYYY-MM-DD`.
pub fn is_version(s: &str) -> bool {
    Date::parse(s, DATE_ONLY).is_ok()
}

/// A duration for people: the two largest units, e.g. `1h 59m`, `3h`, `2d 4h`, `45s`.
/// Truncates (a token valid for 59.9 s more is "59s"); the sign is ignored.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().unsigned_abs();
    let (days, hours, mins, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let (big, big_unit, small, small_unit) = if days > 0 {
        (days, "d", hours, "h")
    } else if hours > 0 {
        (hours, "h", mins, "m")
    } else if mins > 0 {
        (mins, "m", s, "s")
    } else {
        return format!("{s}s");
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit} {small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_every_azure_form() {
        let cases = [
            ("2026-01-31", datetime!(2026-01-31 00:00 UTC)),
            ("2026-01-31T12:30Z", datetime!(2026-01-31 12:30 UTC)),
            ("2026-01-31T12:30:15Z", datetime!(2026-01-31 12:30:15 UTC)),
            (
                "2026-01-31T12:30:15.1234567Z",
                datetime!(2026-01-31 12:30:15.1234567 UTC),
            ),
            (
                "2026-01-31T14:30:15+02:00",
                datetime!(2026-01-31 12:30:15 UTC),
            ),
            ("2026-01-31T10:00-02:30", datetime!(2026-01-31 12:30 UTC)),
            (
                "2026-01-31T12:30:15.5-00:00",
                datetime!(2026-01-31 12:30:15.5 UTC),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_sas_date(s), Some(want), "{s}");
        }
    }

    #[test]
    fn rejects_what_azure_rejects() {
        for s in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2026-01-31T12:30:15",
            "2026-01-31 12:30:15Z",
            "20260131",
            "tomorrow",
            "2026-01-31T25:00Z",
            "2026-01-31T12:30:15Zjunk",
        ] {
            assert_eq!(parse_sas_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn formats_in_utc_without_subseconds() {
        let t = datetime!(2026-01-31 14:30:15.9 +02:00);
        assert_eq!(format_sas_date(t), "2026-01-31T12:30:15Z");
        assert_eq!(
            parse_sas_date(&format_sas_date(t)),
            Some(datetime!(2026-01-31 12:30:15 UTC))
        );
    }

    #[test]
    fn versions() {
        assert!(is_version("2026-06-06"));
        assert!(!is_version("2026-6-6x"));
        assert!(!is_version("latest"));
    }

    #[test]
    fn human_durations() {
        use time::Duration;
        assert_eq!(human_duration(Duration::seconds(0)), "0s");
        assert_eq!(human_duration(Duration::seconds(45)), "45s");
        assert_eq!(human_duration(Duration::seconds(300)), "5m");
        assert_eq!(human_duration(Duration::seconds(7199)), "1h 59m");
        assert_eq!(human_duration(Duration::hours(3)), "3h");
        assert_eq!(human_duration(-Duration::hours(3)), "3h");
        assert_eq!(human_duration(Duration::hours(52)), "2d 4h");
        assert_eq!(human_duration(Duration::milliseconds(59_900)), "59s");
    }
}
