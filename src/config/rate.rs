//! Bandwidth limits as users write them: "2MiB/s", "500 KB/s", "8Mbit", "8 Mbit/s".

/// Bytes per second, or an error message saying what is accepted.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("ps"))
        .unwrap_or(t)
        .trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("{text:?} is not a rate (examples: \"2MiB/s\", \"500KB/s\", \"8Mbit\")")
    })?;
    let unit = unit.trim();
    let lower = unit.to_ascii_lowercase();
    let bytes_per_unit: f64 = if let Some(prefix) = lower.strip_suffix("bit") {
        // Network speeds are decimal: 8 Mbit = 1,000,000 bytes.
        let mult = match prefix {
            "" => 1.0,
            "k" => 1e3,
            "m" => 1e6,
            "g" => 1e9,
            _ => return Err(format!("{text:?}: unknown unit {unit:?}")),
        };
        mult / 8.0
    } else {
        match unit {
            "" | "B" | "b" => 1.0,
            "K" | "k" | "KB" | "kB" => 1e3,
            "KiB" | "kiB" => 1024.0,
            "M" | "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "G" | "GB" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use B, KB, KiB, MB, MiB, GB, GiB per second, or kbit, Mbit, Gbit)"
                ))
            }
        }
    };
    let rate = value * bytes_per_unit;
    if !(rate >= 1.0) || !rate.is_finite() {
        return Err(format!(
            "{text:?}: a limit must be at least 1 byte per second"
        ));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn accepts_what_users_write() {
        assert_eq!(parse_rate("2MiB/s"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("8Mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("8 Mbit/s"), Ok(1_000_000));
        assert_eq!(parse_rate("500KB/s"), Ok(500_000));
        assert_eq!(parse_rate("1.5 MB"), Ok(1_500_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("2 parsecs").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("").is_err());
    }
}
