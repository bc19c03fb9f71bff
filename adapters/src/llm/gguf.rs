//! Reads what a provider advertises about a GGUF model (name, parameter
//! count, quantization, context length) from the file's header alone.
//!
//! Kept in safe Rust and apart from the inference engine so that listing the
//! models in a directory never loads one, and a file the engine would reject
//! still shows up with a clear reason.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
/// Longest string accepted in a header: a chat template is a few KiB; this
/// bounds the allocation a corrupt length could ask for.
const MAX_STRING: u64 = 16 << 20;
/// Most key/value pairs and tensors accepted: real files have a few hundred.
const MAX_ENTRIES: u64 = 1 << 20;
const MAX_DIMS: u32 = 8;

/// What the header says about a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GgufSummary {
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// Sum of the element counts of all tensors.
    pub parameters: u64,
    /// From `general.file_type`, else the most common tensor type.
    pub quantization: String,
    /// `<architecture>.context_length` (0 when absent).
    pub context_length: u32,
    /// `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
    /// `<architecture>.pooling_type` present: an embedding model.
    pub pooling: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("not a GGUF file (bad magic)")]
    Magic,
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("corrupt header: {0}")]
    Corrupt(String),
}

/// Reads the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<GgufSummary, GgufError> {
    let mut r = BufReader::new(File::open(path)?);
    summarize(&mut r)
}

fn summarize<R: Read + Seek>(r: &mut R) -> Result<GgufSummary, GgufError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(GgufError::Magic);
    }
    let version = u32_le(r)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let tensors = u64_le(r)?;
    let kvs = u64_le(r)?;
    if tensors > MAX_ENTRIES || kvs > MAX_ENTRIES {
        return Err(GgufError::Corrupt(format!(
            "{tensors} tensors and {kvs} metadata entries"
        )));
    }
    let mut s = GgufSummary::default();
    let mut file_type = None;
    // Context length and pooling are keyed by the architecture, which may
    // come after them; remember every candidate and pick at the end.
    let mut context_lengths: Vec<(String, u32)> = Vec::new();
    let mut poolings: Vec<(String, u32)> = Vec::new();
    for _ in 0..kvs {
        let key = string(r)?;
        let ty = u32_le(r)?;
        match (key.as_str(), ty) {
            ("general.architecture", 8) => s.architecture = string(r)?,
            ("general.name", 8) => s.name = Some(string(r)?),
            ("tokenizer.chat_template", 8) => s.chat_template = Some(string(r)?),
            ("general.file_type", _) => file_type = scalar_u64(r, ty)?,
            (k, _) if k.ends_with(".context_length") => {
                if let Some(v) = scalar_u64(r, ty)? {
                    context_lengths.push((k.to_string(), u32::try_from(v).unwrap_or(u32::MAX)));
                }
            }
            (k, _) if k.ends_with(".pooling_type") => {
                if let Some(v) = scalar_u64(r, ty)? {
                    poolings.push((k.to_string(), u32::try_from(v).unwrap_or(u32::MAX)));
                }
            }
            _ => skip_value(r, ty)?,
        }
    }
    let prefix = format!("{}.", s.architecture);
    s.context_length = context_lengths
        .iter()
        .find(|(k, _)| k.strip_prefix(&prefix) == Some("context_length"))
        .map_or(0, |(_, v)| *v);
    s.pooling = poolings
        .iter()
        .find(|(k, _)| k.strip_prefix(&prefix) == Some("pooling_type"))
        .map(|(_, v)| *v);
    let mut by_type: Vec<(u32, u64)> = Vec::new();
    for _ in 0..tensors {
        skip_string(r)?;
        let dims = u32_le(r)?;
        if dims > MAX_DIMS {
            return Err(GgufError::Corrupt(format!(
                "a tensor with {dims} dimensions"
            )));
        }
        let mut elements: u64 = 1;
        for _ in 0..dims {
            elements = elements.saturating_mul(u64_le(r)?);
        }
        let ty = u32_le(r)?;
        let _offset = u64_le(r)?;
        s.parameters = s.parameters.saturating_add(elements);
        match by_type.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, n)) => *n = n.saturating_add(elements),
            None => by_type.push((ty, elements)),
        }
    }
    s.quantization = file_type
        .and_then(|ft| u32::try_from(ft).ok())
        .and_then(file_type_name)
        .map(str::to_string)
        .or_else(|| {
            // Older files lack general.file_type: the type holding most weights says it.
            by_type
                .iter()
                .max_by_key(|(_, n)| *n)
                .map(|(t, _)| tensor_type_name(*t))
        })
        .unwrap_or_else(|| "unknown".to_string());
    Ok(s)
}

/// Names of llama.cpp's `llama_ftype` values, as Ollama and model cards print them.
fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

/// Names of ggml's tensor types.
fn tensor_type_name(t: u32) -> String {
    let name = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        other => return format!("type{other}"),
    };
    name.to_string()
}

fn u32_le<R: Read>(r: &mut R) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn u64_le<R: Read>(r: &mut R) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn string<R: Read>(r: &mut R) -> Result<String, GgufError> {
    let len = u64_le(r)?;
    if len > MAX_STRING {
        return Err(GgufError::Corrupt(format!("a string of {len} bytes")));
    }
    let mut buf = Vec::with_capacity(len as usize);
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(GgufError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn skip_string<R: Read + Seek>(r: &mut R) -> Result<(), GgufError> {
    let len = u64_le(r)?;
    if len > MAX_STRING {
        return Err(GgufError::Corrupt(format!("a string of {len} bytes")));
    }
    skip(r, len)
}

fn skip<R: Seek>(r: &mut R, n: u64) -> Result<(), GgufError> {
    let n = i64::try_from(n).map_err(|_| GgufError::Corrupt("an entry past any file".into()))?;
    r.seek_relative(n)?;
    Ok(())
}

/// Size in bytes of a fixed-size value type, `None` for strings and arrays.
fn fixed_size(ty: u32) -> Result<Option<u64>, GgufError> {
    Ok(match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        8 | 9 => None,
        other => return Err(GgufError::Corrupt(format!("unknown value type {other}"))),
    })
}

/// Reads an unsigned or non-negative integer value; other types are skipped
/// and give `None`.
fn scalar_u64<R: Read + Seek>(r: &mut R, ty: u32) -> Result<Option<u64>, GgufError> {
    Ok(match ty {
        0 | 1 => {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)?;
            Some(u64::from(b[0]))
        }
        2 | 3 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            Some(u64::from(u16::from_le_bytes(b)))
        }
        4 => Some(u64::from(u32_le(r)?)),
        5 => u64::try_from(i32::from_le_bytes(u32_le(r)?.to_le_bytes())).ok(),
        10 => Some(u64_le(r)?),
        11 => u64::try_from(i64::from_le_bytes(u64_le(r)?.to_le_bytes())).ok(),
        _ => {
            skip_value(r, ty)?;
            None
        }
    })
}

fn skip_value<R: Read + Seek>(r: &mut R, ty: u32) -> Result<(), GgufError> {
    if let Some(n) = fixed_size(ty)? {
        return skip(r, n);
    }
    if ty == 8 {
        return skip_string(r);
    }
    // An array: element type, count, elements.
    let elem = u32_le(r)?;
    let count = u64_le(r)?;
    match fixed_size(elem)? {
        Some(n) => skip(
            r,
            n.checked_mul(count)
                .ok_or_else(|| GgufError::Corrupt(format!("an array of {count} elements")))?,
        ),
        None if elem == 8 => {
            // The vocabulary: tens of thousands of strings, each length-prefixed.
            for _ in 0..count {
                skip_string(r)?;
            }
            Ok(())
        }
        None => Err(GgufError::Corrupt("nested arrays".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn gguf_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A header with a few metadata kinds and two tensors.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes()); // tensors
        b.extend_from_slice(&5u64.to_le_bytes()); // kvs
        // Context length before the architecture: order must not matter.
        gguf_string(&mut b, "llama.context_length");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&8192u32.to_le_bytes());
        gguf_string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        gguf_string(&mut b, "llama");
        gguf_string(&mut b, "tokenizer.ggml.tokens");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        gguf_string(&mut b, "<s>");
        gguf_string(&mut b, "hello");
        gguf_string(&mut b, "tokenizer.ggml.scores");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&[0u8; 8]);
        gguf_string(&mut b, "general.file_type");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&15u32.to_le_bytes());
        for (name, dims) in [("a", vec![4u64, 8]), ("b", vec![16u64])] {
            gguf_string(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&12u32.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_what_the_advert_needs() {
        let s = summarize(&mut Cursor::new(sample())).expect("parses");
        assert_eq!(s.architecture, "llama");
        assert_eq!(s.context_length, 8192);
        assert_eq!(s.quantization, "Q4_K_M");
        assert_eq!(s.parameters, 32 + 16);
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let full = sample();
        for cut in 0..full.len() {
            assert!(summarize(&mut Cursor::new(full[..cut].to_vec())).is_err());
        }
        assert!(matches!(
            summarize(&mut Cursor::new(b"GGML....".to_vec())),
            Err(GgufError::Magic)
        ));
    }
}
