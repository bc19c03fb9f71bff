//! Content hashes. Every id in the protocol (job, bid, result, receipt) is the
//! BLAKE3 hash of the signed bytes it names, so ids cannot be chosen, only
//! computed, and two peers always agree on them.

use crate::bytes::byte_newtype;

byte_newtype!(
    /// A BLAKE3 hash.
    Digest,
    32
);

impl Digest {
    /// The BLAKE3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Hash of several parts, each length-prefixed so that part boundaries
    /// cannot be shifted to forge a collision.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        Digest(*h.finalize().as_bytes())
    }

    /// The first eight bytes as an integer, for hashing into rankings.
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

/// A job's id: the digest of the client's signed `JobSpec` envelope.
pub type JobId = Digest;
/// A bid's id: the digest of the provider's signed `Bid` envelope.
pub type BidId = Digest;
/// A receipt's id: the digest of the encoded receipt body.
pub type ReceiptId = Digest;
