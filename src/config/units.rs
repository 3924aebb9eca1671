//! Human durations (`"500ms"`, `"1m 30s"`) and sizes (`"1MiB"`), plain code.

use std::time::Duration;

/// Parses `"500ms"`, `"20s"`, `"1m 30s"`, `"1.5h"`, `"2d"`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("{text:?} is not a duration (use e.g. \"500ms\", \"20s\", \"1m 30s\")");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return seconds_to_duration(seconds).ok_or_else(invalid);
    }
    let mut total = 0f64;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => return Err(invalid()),
        };
        total += number * scale;
        rest = rest[unit_len..].trim_start();
    }
    seconds_to_duration(total).ok_or_else(invalid)
}

fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
}

/// Parses `"1MiB"`, `"64 KiB"`, `"16MB"`, `"512B"`, `"1024"` into bytes, up to `usize::MAX`.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let invalid = || format!("{text:?} is not a size (use e.g. \"64KiB\", \"1MiB\", \"16MB\")");
    let too_large = || {
        format!(
            "{text:?} is larger than the largest size, {} bytes",
            usize::MAX
        )
    };
    let trimmed = text.trim();
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    if number_len == 0 {
        return Err(invalid());
    }
    let (number, unit) = trimmed.split_at(number_len);
    let scale: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "KiB" | "kib" => 1 << 10,
        "MiB" | "mib" => 1 << 20,
        "GiB" | "gib" => 1 << 30,
        "KB" | "kB" | "kb" => 1_000,
        "MB" | "mb" => 1_000_000,
        "GB" | "gb" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    // Whole numbers are counted exactly: a float cannot tell usize::MAX from 2^64.
    if !number.contains('.') {
        let whole: u128 = number.parse().map_err(|_| invalid())?;
        return whole
            .checked_mul(u128::from(scale))
            .and_then(|bytes| usize::try_from(bytes).ok())
            .ok_or_else(too_large);
    }
    let bytes = number.parse::<f64>().map_err(|_| invalid())? * scale as f64;
    // `usize::MAX as f64` rounds up to 2^64, which does not fit: the bound is exclusive.
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(invalid());
    }
    if bytes >= usize::MAX as f64 {
        return Err(too_large());
    }
    Ok(bytes as usize)
}

/// The closest of `known` to `unknown`, when it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "20x", "s", "-1s", "1e400", "ms5", "1 2s"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("is not a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16MB"), Ok(16_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        for bad in ["", "MiB", "1 XB", "-1", "1e999", "1.2.3", "."] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_reach_usize_max_and_stop_at_2_pow_64() {
        assert_eq!(parse_size(&usize::MAX.to_string()), Ok(usize::MAX));
        let two_pow_64 = (u128::from(u64::MAX) + 1).to_string();
        let error = parse_size(&two_pow_64).unwrap_err();
        assert!(error.contains("is larger than the largest size"), "{error}");
        // 2^64 - 2^30 fits; 2^34 GiB is 2^64 and does not, nor does its float spelling.
        assert_eq!(parse_size("17179869183GiB"), Ok(usize::MAX - (1 << 30) + 1));
        assert!(parse_size("17179869184GiB").is_err());
        assert!(parse_size("17179869184.0GiB").is_err());
        assert!(parse_size("18446744073709551616.0").is_err());
        assert!(parse_size("99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn suggestions() {
        let known = ["url", "headers", "heartbeat", "handshake_timeout"];
        assert_eq!(did_you_mean("ulr", &known), Some("url"));
        assert_eq!(did_you_mean("heartbeet", &known), Some("heartbeat"));
        assert_eq!(
            did_you_mean("handshake_timout", &known),
            Some("handshake_timeout")
        );
        assert_eq!(did_you_mean("banana", &known), None);
    }
}
