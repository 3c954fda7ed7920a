//! Sizes and rates for people: one unit system everywhere (summaries, progress, `ls -h`),
//! IEC binary prefixes (KiB = 1024 bytes, MiB, GiB…).

/// `bytes` for a person: `512 B`, `1.5 KiB`, `15 MiB`, `1.2 GiB` (one decimal below 10).
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `bytes` moved in `secs`, per second: `380 MiB/s`.
pub(crate) fn rate(bytes: u64, secs: f64) -> String {
    format!("{}/s", human((bytes as f64 / secs.max(1e-3)) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iec_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(15 << 20), "15 MiB");
        assert_eq!(human((1 << 30) + (1 << 29)), "1.5 GiB");
        assert_eq!(human(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human(u64::MAX), "16 EiB");
        assert_eq!(rate(3 << 20, 2.0), "1.5 MiB/s");
    }
}
