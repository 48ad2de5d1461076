//! ISO 8601 date-times for `group reset-offsets --to-datetime`, turned into
//! the millisecond timestamps Kafka's ListOffsets takes. Small enough to
//! own rather than pull in a date library for one flag.

use anyhow::{bail, Context};

/// Parses `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]` (a space may stand
/// for the `T`) into milliseconds since the Unix epoch. Without an offset the
/// time is taken as UTC, so a script gets the same answer on every machine.
pub fn parse_millis(s: &str) -> anyhow::Result<i64> {
    parse(s).with_context(|| {
        format!("{s:?} is not an ISO 8601 date-time like 2024-05-01T12:00:00.000Z")
    })
}

fn parse(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if !s.is_char_boundary(s.len().min(10)) {
        bail!("not a date");
    }
    let (date, rest) = s.split_at(s.len().min(10));
    let year = num(date.get(0..4), 0, 9999)?;
    sep(date.get(4..5), "-")?;
    let month = num(date.get(5..7), 1, 12)?;
    sep(date.get(7..8), "-")?;
    let day = num(date.get(8..10), 1, days_in_month(year, month))?;
    let days = days_from_civil(year, month, day);
    if rest.is_empty() {
        return Ok(days * 86_400_000);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix(' '))
        .context("expected T between date and time")?;
    // The zone starts at the first Z, + or - after the time.
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let mut parts = time.splitn(3, ':');
    let hour = num(parts.next(), 0, 23)?;
    let minute = num(parts.next(), 0, 59)?;
    let (second, millis) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            if whole.len() != 2 {
                bail!("seconds must have two digits");
            }
            let second = num(Some(whole), 0, 59)?;
            if !frac.chars().all(|c| c.is_ascii_digit()) {
                bail!("bad fraction of a second");
            }
            // Only milliseconds matter to Kafka; finer digits are dropped.
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            (second, digits.parse::<i64>()?)
        }
    };
    let offset_minutes = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let z = &z[1..];
            let (h, m) = match z.split_once(':') {
                Some((h, m)) => (h, m),
                None if z.len() == 4 => z.split_at(2),
                None if z.len() == 2 => (z, "00"),
                None => bail!("bad zone offset"),
            };
            sign * (num(Some(h), 0, 23)? * 60 + num(Some(m), 0, 59)?)
        }
    };
    let local = ((days * 24 + hour) * 60 + minute) * 60 + second;
    Ok((local - offset_minutes * 60) * 1000 + millis)
}

fn num(s: Option<&str>, min: i64, max: i64) -> anyhow::Result<i64> {
    let s = s.context("too short")?;
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        bail!("{s:?} is not a number");
    }
    let n: i64 = s.parse()?;
    if !(min..=max).contains(&n) {
        bail!("{n} is out of range {min}..={max}");
    }
    Ok(n)
}

fn sep(s: Option<&str>, want: &str) -> anyhow::Result<()> {
    if s != Some(want) {
        bail!("expected {want:?}");
    }
    Ok(())
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, counted in 400-year
/// eras (146,097 days each) with years starting in March so that the leap
/// day falls last.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn known_instants() {
        assert_eq!(parse_millis("1970-01-01").unwrap(), 0);
        assert_eq!(parse_millis("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_millis("2024-02-29T12:34:56.789Z").unwrap(),
            1_709_210_096_789
        );
        assert_eq!(
            parse_millis("2000-03-01T00:00:00").unwrap(),
            951_868_800_000
        );
        assert_eq!(parse_millis("1969-12-31T23:59:59.999").unwrap(), -1);
    }

    #[test]
    fn zone_offsets_move_the_instant() {
        let utc = parse_millis("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_millis("2024-05-01T14:00:00+02:00").unwrap(), utc);
        assert_eq!(parse_millis("2024-05-01T07:30:00-0430").unwrap(), utc);
        assert_eq!(parse_millis("2024-05-01 12:00").unwrap(), utc);
        assert_eq!(parse_millis("2024-05-01T12:00:00.5").unwrap(), utc + 500);
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-05-01T25:00",
            "2024-05-01T12",
            "2024-05-01T12:00:0",
            "2024-05-01X12:00",
            "2024-05-01T12:00+5",
        ] {
            assert!(parse_millis(bad).is_err(), "{bad} was accepted");
        }
    }
}
