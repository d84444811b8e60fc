//! Durations and instants as link requests spell them: Go-style durations
//! (`30m`, `1h30m`, `1.5h`, as kube-gateway takes them) and RFC 3339
//! timestamps.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest text accepted for either form; longer is malformed.
const MAX_LEN: usize = 64;

/// Parses a Go-style duration: one or more `<number><unit>` terms, the
/// number possibly with a fraction, the unit one of `h`, `m`, `s`, `ms`,
/// `us`, `µs`, `ns`. The result is truncated to whole seconds. Signs and
/// empty input are refused; so is zero (a link must live).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    if text.is_empty() || text.len() > MAX_LEN {
        return Err("expected a duration such as \"30m\" or \"1h30m\"".into());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total_nanos: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let whole = &text[start..i];
        let mut fraction = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let f = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            fraction = &text[f..i];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!(
                "{text:?} is not a duration (expected e.g. \"30m\")"
            ));
        }
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
            i += 1;
        }
        let unit: u128 = match &text[unit_start..i] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            "" => return Err(format!("{text:?}: missing unit (h, m, s)")),
            other => return Err(format!("{text:?}: unknown unit {other:?} (h, m, s)")),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{text:?}: number too large"))?
        };
        // Fraction: at most 9 digits matter at nanosecond resolution.
        let digits = &fraction[..fraction.len().min(9)];
        let scaled: u128 = if digits.is_empty() {
            0
        } else {
            let value: u128 = digits
                .parse()
                .map_err(|_| format!("{text:?}: bad fraction"))?;
            value * unit / 10u128.pow(digits.len() as u32)
        };
        total_nanos = whole
            .checked_mul(unit)
            .and_then(|n| n.checked_add(scaled))
            .and_then(|n| total_nanos.checked_add(n))
            .filter(|n| *n <= u128::from(u64::MAX))
            .ok_or_else(|| format!("{text:?}: duration too large"))?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| format!("{text:?}: duration too large"))?;
    if secs == 0 {
        return Err(format!(
            "{text:?}: a duration of at least one second is needed"
        ));
    }
    Ok(secs)
}

/// Parses an RFC 3339 timestamp (`2016-11-01T20:44:39Z`, any offset) into
/// seconds since the Unix epoch (fractions truncated; before 1970 refused).
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    if text.len() > MAX_LEN {
        return Err("timestamp too long".into());
    }
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!("{text:?} is not an RFC 3339 timestamp (e.g. \"2016-11-01T20:44:39Z\")")
    })?;
    u64::try_from(at.unix_timestamp()).map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1.5h"), Ok(5400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("2m500ms"), Ok(120));
        assert_eq!(parse_duration(".5m"), Ok(30));
        assert_eq!(parse_duration("1500ms"), Ok(1));
        assert_eq!(parse_duration("25m"), Ok(1500));
    }

    #[test]
    fn bad_durations_have_clear_errors() {
        for bad in [
            "",
            "0",
            "0s",
            "500ms",
            "-1h",
            "+1h",
            "1",
            "h",
            "1x",
            "1 h",
            "1h ",
            ".m",
            "1.h.m",
            "99999999999999999999999h",
            "1d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_duration(&"1".repeat(100)).is_err());
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2016-11-01T20:44:39Z"), Ok(1_478_033_079));
        assert_eq!(
            parse_rfc3339("2016-11-01T21:44:39+01:00"),
            Ok(1_478_033_079)
        );
        assert_eq!(parse_rfc3339("2016-11-01T20:44:39.9Z"), Ok(1_478_033_079));
        for bad in [
            "",
            "2016-11-01",
            "2016-11-01 20:44:39",
            "1969-12-31T23:59:59Z",
            "2016-13-01T00:00:00Z",
            "yesterday",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
