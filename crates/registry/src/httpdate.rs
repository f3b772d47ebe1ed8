//! HTTP-dates (RFC 9110 section 5.6.7), for `Retry-After`: the preferred
//! IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms
//! recipients must still accept, RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`)
//! and asctime (`Sun Nov  6 08:49:37 1994`). Small enough not to warrant a
//! date crate.

use std::time::{Duration, SystemTime};

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// The instant `value` names, or None when it is no HTTP-date.
pub(crate) fn parse(value: &str) -> Option<SystemTime> {
    let words: Vec<&str> = value.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let (day, month, year, time) = match words.as_slice() {
        // IMF-fixdate: weekday, day month year time GMT
        [_, day, month, year, time, "GMT"] => (day.parse().ok()?, month_number(month)?, year.parse().ok()?, *time),
        // RFC 850: weekday, dd-mon-yy time GMT (two-digit years within 50 years of now read as 19xx/20xx)
        [_, date, time, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            let year: i64 = year.parse().ok()?;
            let year = if year < 100 {
                year + if year < 70 { 2000 } else { 1900 }
            } else {
                year
            };
            (day.parse().ok()?, month_number(month)?, year, *time)
        }
        // asctime: weekday month day time year
        [_, month, day, time, year] => (day.parse().ok()?, month_number(month)?, year.parse().ok()?, *time),
        _ => return None,
    };
    let mut clock = time.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some() || h > 23 || m > 59 || s > 60 || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = u64::try_from(days).ok()? * 86_400 + h * 3_600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn month_number(name: &str) -> Option<u32> {
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name)).map(|i| i as u32 + 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let at = |s: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), at(784_111_777));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), at(784_111_777));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), at(784_111_777));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), at(0));
        assert_eq!(parse("Tue, 29 Feb 2028 12:00:00 GMT"), at(1_835_438_400));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse("120"), None);
    }
}
