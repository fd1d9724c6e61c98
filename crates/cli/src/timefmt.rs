//! Points in time on the command line (`--from-time`, `--to-datetime`) and in output.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch from:
/// - an integer: epoch milliseconds (Kafka's record timestamps);
/// - `now`, or `-DURATION` for that long ago, e.g. `-15m`, `-2h`, `-1d`;
/// - RFC 3339, e.g. `2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.250+02:00`;
/// - a date and time without a zone, in local time (as Kafka's tool), e.g.
///   `2024-05-01T10:00:00`, `2024-05-01 10:00`, or a date alone (`2024-05-01`, at midnight).
pub fn parse_time_ms(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let err = || {
        format!(
            "'{s}' is not a time: use epoch milliseconds, -DURATION (e.g. -15m), RFC 3339 \
             (2024-05-01T10:00:00Z) or a local date and time (2024-05-01T10:00:00)"
        )
    };
    if s.is_empty() {
        return Err(err());
    }
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| err());
    }
    if let Some(d) = s.strip_prefix('-') {
        let d = humantime::parse_duration(d).map_err(|_| err())?;
        return Ok(now_ms - d.as_millis().min(i64::MAX as u128) as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return local_ms(n).ok_or_else(err);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local_ms(d.and_hms_opt(0, 0, 0).ok_or_else(err)?).ok_or_else(err);
    }
    Err(err())
}

fn local_ms(n: NaiveDateTime) -> Option<i64> {
    Local
        .from_local_datetime(&n)
        .earliest()
        .map(|t| t.timestamp_millis())
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_accepted_form_should_parse_to_epoch_millis() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time_ms("1234", now), Ok(1234));
        assert_eq!(parse_time_ms("now", now), Ok(now));
        assert_eq!(parse_time_ms("-15m", now), Ok(now - 15 * 60 * 1000));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T23:13:20.500+01:00", now),
            Ok(1_700_000_000_500)
        );
        assert!(parse_time_ms("2023-11-14T22:13:20", now).is_ok());
        assert!(parse_time_ms("2023-11-14", now).is_ok());
        assert!(parse_time_ms("yesterday", now).is_err());
        assert!(parse_time_ms("", now).is_err());
    }
}
