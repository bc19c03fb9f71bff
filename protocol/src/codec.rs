//! The one place that knows the wire encoding.
//!
//! bincode 2.0.1 (pinned: 3.0 is a tombstone release) through its serde
//! integration, with the standard configuration (little endian, varint
//! integers). Every decode is bounded twice: the input slice must fit the
//! caller's limit, and bincode's own allocation limit stops a forged length
//! prefix from reserving more than the input could hold. Swapping to another
//! serde format is a change to this module alone.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Hard ceiling for any single decode, whatever the caller asks for.
pub const MAX_DECODE_BYTES: usize = 4 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
>;

const fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Why bytes did not decode. Failures are values, never panics.
#[non_exhaustive]
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are over the limit before any parsing.
    #[error("message is {len} bytes, over the {limit}-byte limit for this kind")]
    TooLarge {
        /// Their length.
        len: usize,
        /// The limit they broke.
        limit: usize,
    },
    /// The bytes are not the type's encoding.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes were left after the value (their count).
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
}

/// Encodes a value. Encoding our own types into memory cannot fail short of a
/// `Serialize` impl that refuses, which none of ours do.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config())
        .unwrap_or_else(|e| panic!("encoding a protocol type failed: {e}"))
}

/// Decodes exactly one value from `bytes`, which must be at most `limit` bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    let limit = limit.min(MAX_DECODE_BYTES);
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let v: Vec<u32> = vec![1, 2, 300];
        let mut bytes = encode(&v);
        assert_eq!(decode::<Vec<u32>>(&bytes, 100), Ok(v));
        bytes.push(0);
        assert_eq!(
            decode::<Vec<u32>>(&bytes, 100),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn forged_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements in a 10-byte message.
        let mut bytes = vec![0xFF];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 100),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn over_limit_is_rejected_before_parsing() {
        let bytes = vec![0u8; 101];
        assert_eq!(
            decode::<Vec<u8>>(&bytes, 100),
            Err(DecodeError::TooLarge {
                len: 101,
                limit: 100
            })
        );
    }
}
