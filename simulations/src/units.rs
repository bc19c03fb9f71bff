//! Quantities as a person writes them in a scenario: `"30s"`, `"64GiB"`,
//! `"100Mbit"`, `"2/s"`. Each type says, when it cannot parse a value, the
//! form it expected; the TOML parser adds the key and the line.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A span of simulated time, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    pub const fn ms(self) -> u64 {
        self.0
    }
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1000)
    }
    pub const fn from_mins(m: u64) -> Self {
        Duration(m * 60_000)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Splits `"12.5GiB"` into `(12.5, "GiB")`.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num: f64 = num.replace('_', "").parse().ok()?;
    (num.is_finite() && num >= 0.0).then_some((num, unit.trim()))
}

/// Parses `"250ms"`, `"30s"`, `"1.5m"`, `"2h"`, `"1d"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = split_number(s)?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(Duration((n * scale).round() as u64))
}

const DURATION_FORM: &str = "a duration string such as \"250ms\", \"30s\", \"5m\", \"1h\"";

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORM)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ByteSize(pub u64);

/// Parses `"512MiB"`, `"64GiB"`, `"1TB"`, `"4096"`.
pub fn parse_bytes(s: &str) -> Option<ByteSize> {
    let (n, unit) = split_number(s)?;
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(ByteSize((n * scale).round() as u64))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512MiB\", \"64GiB\", \"1TB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Link bandwidth, in bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bandwidth(pub f64);

/// Parses `"100Mbit"`, `"1Gbit"`, `"10MB/s"`, `"512kbit"`.
pub fn parse_bandwidth(s: &str) -> Option<Bandwidth> {
    let (n, unit) = split_number(s)?;
    let bytes_per_s = match unit {
        "bit" | "bit/s" | "bps" => n / 8.0,
        "kbit" | "kbit/s" | "Kbit" => n * 1e3 / 8.0,
        "Mbit" | "Mbit/s" | "Mbps" => n * 1e6 / 8.0,
        "Gbit" | "Gbit/s" | "Gbps" => n * 1e9 / 8.0,
        "B/s" => n,
        "kB/s" | "KB/s" => n * 1e3,
        "MB/s" => n * 1e6,
        "GB/s" => n * 1e9,
        _ => return None,
    };
    (bytes_per_s > 0.0).then_some(Bandwidth(bytes_per_s))
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bandwidth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bandwidth above zero such as \"100Mbit\", \"1Gbit\" or \"10MB/s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bandwidth, E> {
                parse_bandwidth(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

/// Events per millisecond (an arrival or churn rate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate(pub f64);

impl Rate {
    pub fn per_ms(self) -> f64 {
        self.0
    }
}

/// Parses `"2/s"`, `"30/min"`, `"100/h"`, `"0"`.
pub fn parse_rate(s: &str) -> Option<Rate> {
    let s = s.trim();
    if let Some((n, unit)) = s.split_once('/') {
        let (n, rest) = split_number(n)?;
        if !rest.is_empty() {
            return None;
        }
        let per = match unit.trim() {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        };
        Some(Rate(n / per))
    } else {
        let (n, rest) = split_number(s)?;
        (rest.is_empty() && n == 0.0).then_some(Rate(0.0))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"2/s\", \"30/min\" or \"100/h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                parse_rate(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_in_the_forms_documented() {
        assert_eq!(parse_duration("250ms"), Some(Duration(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration(300_000)));
        assert_eq!(parse_duration("1h"), Some(Duration(3_600_000)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_bytes("512MiB"), Some(ByteSize(512 << 20)));
        assert_eq!(parse_bytes("1TB"), Some(ByteSize(1_000_000_000_000)));
        assert_eq!(parse_bandwidth("8Mbit"), Some(Bandwidth(1e6)));
        assert_eq!(parse_rate("2/s"), Some(Rate(0.002)));
        assert_eq!(parse_rate("60/min"), Some(Rate(0.001)));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(Duration(90_000).to_string(), "90s");
        assert_eq!(Duration(120_000).to_string(), "2m");
    }
}
