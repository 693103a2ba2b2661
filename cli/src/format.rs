//! Formatting for people: byte counts, UTC timestamps, hex.

use std::fmt::Write;

/// `"512 B"`, or `"1536 B (1.5 KiB)"` from 1 KiB up.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        _ => format!("{n} B ({})", size(n)),
    }
}

/// `"512 B"`, `"1.5 KiB"`, `"100.0 MiB"`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds since the Unix epoch as `2024-05-01 12:00:00.250 UTC`.
pub fn utc(ms: u64) -> String {
    let (date, time) = split(ms);
    format!("{date} {time} UTC")
}

/// Milliseconds since the Unix epoch as RFC 3339: `2024-05-01T12:00:00.250Z`.
pub fn rfc3339(ms: u64) -> String {
    let (date, time) = split(ms);
    format!("{date}T{time}Z")
}

fn split(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms % 1000
        ),
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Lowercase hex of `data`.
pub fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(rfc3339(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59.000 UTC");
        assert_eq!(utc(1_709_251_200_000), "2024-03-01 00:00:00.000 UTC");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1536 B (1.5 KiB)");
        assert_eq!(bytes(104_857_600), "104857600 B (100.0 MiB)");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(65_536), "64.0 KiB");
        assert_eq!(size(3 << 40), "3.0 TiB");
        assert_eq!(size(5 << 50), "5120.0 TiB");
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0xff, 0x10]), "00ff10");
    }
}
