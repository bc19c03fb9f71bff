//! What the CLI parses from its arguments: sizes, durations, credits,
//! environment pairs. Shared by the commands, `devnet` and `mcp`.

use anyhow::{Context, Result, bail};
use modchain_protocol::MICROS_PER_CREDIT;
use serde_json::{Map, Value};
use std::time::Duration;

/// `512m`, `2g`, `1.5GiB`, `4096` (bytes) → bytes. Units are binary.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => bail!("size {s:?}: unknown unit (use k, m, g or t, e.g. 512m or 2g)"),
    };
    let bytes = parse_scaled(num, mult).with_context(|| format!("size {s:?}: not a number"))?;
    if bytes == 0 {
        bail!("size {s:?} is zero");
    }
    Ok(bytes)
}

/// `30s`, `5m`, `1h`, `250ms`, `90` (seconds) → duration.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let ms_per: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" | "sec" | "secs" => 1000,
        "m" | "min" | "mins" => 60_000,
        "h" | "hr" | "hrs" => 3_600_000,
        _ => bail!("duration {s:?}: unknown unit (use ms, s, m or h, e.g. 30s or 5m)"),
    };
    let ms = parse_scaled(num, ms_per).with_context(|| format!("duration {s:?}: not a number"))?;
    if ms == 0 {
        bail!("duration {s:?} is zero");
    }
    Ok(Duration::from_millis(ms))
}

/// Credits as a decimal (`0.25`, `3`) → micro-credits, exactly.
pub fn parse_credits(s: &str) -> Result<u64> {
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        bail!("price {s:?}: expected credits as a decimal number, like 0.5");
    }
    if frac.len() > 6 {
        bail!("price {s:?}: at most six decimals (one micro-credit is 0.000001)");
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .with_context(|| format!("price {s:?} is too large"))?
    };
    let frac_micro: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().unwrap_or(0)
    };
    whole
        .checked_mul(MICROS_PER_CREDIT)
        .and_then(|w| w.checked_add(frac_micro))
        .with_context(|| format!("price {s:?} is too large"))
}

/// `1.5` × `mult` without floating point rounding surprises for integers.
pub fn parse_scaled(num: &str, mult: u64) -> Result<u64> {
    if num.is_empty() {
        bail!("empty");
    }
    match num.split_once('.') {
        None => num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .context("too large"),
        Some(_) => {
            let f: f64 = num.parse().context("not a number")?;
            let v = f * mult as f64;
            if !v.is_finite() || v >= u64::MAX as f64 {
                bail!("too large");
            }
            Ok(v.round() as u64)
        }
    }
}

pub fn parse_env(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut env = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--env {p:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--env {p:?}: the name is empty");
        }
        env.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(env)
}

/// Standard base64 (with padding), for `.wasm` modules.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
