//! Showing modification times to people.

/// `secs` since the Unix epoch as a UTC date and time, `YYYY-MM-DD HH:MM:SS`; one outside
/// the years -9999 to 9999 (a server's clock gone wrong) as the number of seconds.
pub(crate) fn utc(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("{secs} s since 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(utc(i64::MAX), format!("{} s since 1970", i64::MAX));
    }
}
