//! JSON audit lines, formatted by hand on the request path, and their times.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `s` as a JSON string: in quotes, with quotes, backslashes and control characters
/// escaped, so no value can end a field or a line.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_json_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string, without the quotes.
pub fn push_json_escaped(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Starts a JSON audit line, `{"time":"<RFC 3339>"`: add fields with
/// [`push_json_field`], then end it with [`end_json_line`].
pub fn start_json_line(out: &mut String, micros: i64) {
    out.push_str("{\"time\":\"");
    push_rfc3339(out, micros);
    out.push('"');
}

/// Appends `,"name":"value"`, the value escaped.
pub fn push_json_field(out: &mut String, name: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    push_json_string(out, value);
}

/// Appends `,"name":N`.
pub fn push_json_number(out: &mut String, name: &str, n: u64) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    // Digits written by hand: this is on the request path.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    push_ascii(out, &digits[at..]);
}

/// Ends a JSON audit line.
pub fn end_json_line(out: &mut String) {
    out.push_str("}\n");
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Appends `micros` since the epoch as an RFC 3339 UTC time with microseconds,
/// `2026-12-05T10:12:42.123456Z`.
pub fn push_rfc3339(out: &mut String, micros: i64) {
    let (days, rem) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil_from_days(days);
    // Written field by field: a line is formatted on every audited request, and the
    // formatting machinery cost more than the rest of it.
    match u64::try_from(year) {
        Ok(year) if year <= 9999 => {
            let mut digits = *b"0000";
            put(&mut digits, year);
            push_ascii(out, &digits);
        }
        _ => {
            // Writing to a String cannot fail.
            let _ = write!(out, "{year:04}");
        }
    }
    // `rem` is in 0..86_400_000_000, so these are small and not negative.
    let secs = (rem / 1_000_000) as u64;
    let mut rest = *b"-00-00T00:00:00.000000Z";
    put(&mut rest[1..3], month.into());
    put(&mut rest[4..6], day.into());
    put(&mut rest[7..9], secs / 3600);
    put(&mut rest[10..12], secs / 60 % 60);
    put(&mut rest[13..15], secs % 60);
    put(&mut rest[16..22], (rem % 1_000_000) as u64);
    push_ascii(out, &rest);
}

/// The lowest digits of `n`, in decimal, into `field` (which holds zeros), right-aligned.
fn put(field: &mut [u8], mut n: u64) {
    for b in field.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends digits and punctuation.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a calendar whose years start on March 1st, so the leap day ends a year, and
    // count in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small positive numbers by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29, a leap day in a year divisible by 400.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        // Every day follows the previous one over a few centuries.
        let mut previous = civil_from_days(-80_000);
        for d in -79_999..80_000 {
            let next = civil_from_days(d);
            let follows =
                (next.0 == previous.0 && next.1 == previous.1 && next.2 == previous.2 + 1)
                    || (next.0 == previous.0 && next.1 == previous.1 + 1 && next.2 == 1)
                    || (next.0 == previous.0 + 1 && next.1 == 1 && next.2 == 1 && previous.1 == 12);
            assert!(follows, "{previous:?} -> {next:?}");
            previous = next;
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 1234, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            push_json_number(&mut out, "pid", n);
            assert_eq!(out, format!(",\"pid\":{n}"));
        }
    }

    #[test]
    fn json_strings_escape_what_could_end_a_field_or_a_line() {
        for s in [
            "plain",
            "say \"hi\"",
            "back\\slash",
            "new\nline",
            "nul\0 tab\t",
            "caf\u{e9}",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert!(!out.contains('\n'), "{out}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
