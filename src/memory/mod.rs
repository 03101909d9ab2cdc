//! Memory: byte budgets derived from the ceiling ([`budget`]), and measurement of what the
//! process really holds ([`stats`]).

pub mod budget;
pub mod limits;
pub mod log;
pub mod plan;
pub mod stats;
pub mod tree;

pub use budget::{Budget, Permit};
pub use stats::{MemorySample, release_freed_pages, sample};

/// Formats a byte count with binary units (`12.3 MiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses a size such as `64MiB`, `1G`, `512k`, `1.5GiB` or `1000000` (bytes). Decimal
/// suffixes (`MB`, `GB`) are powers of 1000, binary ones (`MiB`, `M`, `G`) powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a size (expected e.g. 64MiB, 1G, 500MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use KiB, MiB, GiB, MB, GB)"
            ));
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
        return Err(format!("size '{text}' is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(100), "100 B");
    }
}
