//! Signed envelopes: the only form in which application messages travel.
//!
//! An envelope carries the protocol version, the message kind, a timestamp,
//! the signer's public key, the encoded payload and an ed25519 signature over
//!
//! ```text
//! "modchain/v1/" || kind name || 0x00 || version (u16 LE) || timestamp (u64 LE) || signer (32 bytes) || payload
//! ```
//!
//! The kind name in the signed bytes is the domain separation: a bid's
//! signature never verifies as a receipt's. Bytes from the network become a
//! [`Signed`] message only through [`Envelope::decode`] and
//! [`Envelope::verify`], which never panic; what fails is a [`Rejection`] the
//! node counts and drops.

use crate::advert::CapabilityAdvert;
use crate::advert_sync::{self, AdvertBundle, AdvertSync};
use crate::auction::{Award, Bid, Decline};
use crate::codec::{self, DecodeError};
use crate::digest::Digest;
use crate::identity::{Keypair, NodeId, Signature};
use crate::job::{Cancel, FetchOutput, JobResult, JobSpec, JobStatus, LogChunk, OutputChunk};
use crate::receipt::SignedReceipt;
use crate::time::{MINUTE, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 4;

/// How far in the future a timestamp may be before we call the sender's clock wrong.
pub const MAX_CLOCK_SKEW_MS: u64 = MINUTE;

/// How old a direct message (anything but adverts and receipts) may be.
pub const MAX_DIRECT_MESSAGE_AGE_MS: u64 = 10 * MINUTE;

/// Room for the envelope's own fields around the payload.
const ENVELOPE_OVERHEAD: usize = 256;

/// The largest message gossip carries, envelope and gossipsub framing
/// included. Gossip is for the small things every peer wants (adverts,
/// receipts); a flood of large ones would cost every peer, so anything
/// bigger travels direct, to the one peer that asked.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// What gossipsub adds around our envelope (topic name, sequence number,
/// protobuf framing), with room to spare.
pub const GOSSIP_FRAMING_BYTES: usize = 512;

/// The kind of message an envelope carries; its name is part of the signed domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// A capability advert (gossip).
    Advert,
    /// A client's job spec.
    Job,
    /// An orchestrator's call for bids.
    CallForBids,
    /// A provider's bid.
    Bid,
    /// A provider's decline.
    Decline,
    /// An orchestrator's award.
    Award,
    /// A job status.
    Status,
    /// A provider's signed result.
    Result,
    /// A client's cancel.
    Cancel,
    /// A signed receipt (gossip).
    Receipt,
    /// A live log chunk.
    Log,
    /// A request for part of an output file.
    Fetch,
    /// A part of an output file.
    Chunk,
    // New kinds go last: a kind travels as its index, so inserting one
    // would renumber those after it.
    /// A joining peer's request for adverts.
    AdvertSync,
    /// An answer to it: advert envelopes in a bundle.
    AdvertBundle,
}

impl Kind {
    /// Every kind, in wire order (the index is the enum's tag).
    pub const ALL: [Kind; 15] = [
        Kind::Advert,
        Kind::Job,
        Kind::CallForBids,
        Kind::Bid,
        Kind::Decline,
        Kind::Award,
        Kind::Status,
        Kind::Result,
        Kind::Cancel,
        Kind::Receipt,
        Kind::Log,
        Kind::Fetch,
        Kind::Chunk,
        Kind::AdvertSync,
        Kind::AdvertBundle,
    ];

    /// The name used in the signature's domain string and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Advert => "advert",
            Kind::Job => "job",
            Kind::CallForBids => "call-for-bids",
            Kind::Bid => "bid",
            Kind::Decline => "decline",
            Kind::Award => "award",
            Kind::Status => "status",
            Kind::Result => "result",
            Kind::Cancel => "cancel",
            Kind::Receipt => "receipt",
            Kind::Log => "log",
            Kind::Fetch => "fetch",
            Kind::Chunk => "chunk",
            Kind::AdvertSync => "advert-sync",
            Kind::AdvertBundle => "advert-bundle",
        }
    }

    /// The largest payload a message of this kind may have.
    pub fn max_payload_bytes(self) -> usize {
        use crate::job::limits;
        match self {
            // Gossiped kinds fit, envelope and all, in MAX_GOSSIP_BYTES.
            Kind::Advert => 60 * 1024,
            Kind::Job => limits::MAX_PARAMS_BYTES + 16 * 1024,
            Kind::CallForBids => limits::MAX_PARAMS_BYTES + 32 * 1024,
            Kind::Bid => 1024,
            Kind::Decline => 2 * 1024,
            // MAX_AWARD_BIDS entries of about 80 bytes, and the rest.
            Kind::Award => 8 * 1024,
            Kind::Status => 4 * 1024,
            Kind::Result => {
                2 * limits::MAX_LOG_BYTES
                    + limits::MAX_INLINE_OUTPUT_BYTES
                    + limits::MAX_OUTPUT_FILES * 512
            }
            Kind::Cancel => 2 * 1024,
            // The receipt and its signatures, and the award it carries.
            Kind::Receipt => 4 * 1024 + 8 * 1024 + ENVELOPE_OVERHEAD,
            Kind::Log => limits::MAX_LOG_CHUNK_BYTES + 256,
            Kind::Fetch => 256,
            Kind::Chunk => limits::MAX_OUTPUT_CHUNK_BYTES + 256,
            Kind::AdvertSync => {
                advert_sync::MAX_SYNC_KNOWN * advert_sync::KNOWN_ADVERT_MAX_BYTES + 16
            }
            Kind::AdvertBundle => advert_sync::MAX_BUNDLE_BYTES,
        }
    }

    /// Whether the message is only meaningful shortly after it was sent.
    /// Jobs are excluded: a client failing over resends its original signed
    /// job, which may be older; the job's own `start_by` bounds it instead.
    fn is_direct(self) -> bool {
        !matches!(self, Kind::Advert | Kind::Receipt | Kind::Job)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest envelope any peer accepts, in bytes.
pub fn max_envelope_bytes() -> usize {
    Kind::ALL
        .iter()
        .map(|k| k.max_payload_bytes())
        .max()
        .unwrap_or(0)
        + ENVELOPE_OVERHEAD
}

/// An orchestrator asks a provider to bid on a job. The one message that
/// carries another envelope, so it lives beside [`Envelope`] rather than in
/// the auction module, which would otherwise import this one and be
/// imported by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallForBids {
    /// The client's signed `Job` envelope, forwarded unchanged so the provider
    /// can check the client's signature and compute the job id itself.
    pub job: Envelope,
    /// Auction round: 0 first, +1 for each re-auction after a failure.
    pub attempt: u32,
    /// Bids arriving after this time are ignored.
    pub bid_deadline: Timestamp,
}

/// Every application message, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A capability advert.
    Advert(CapabilityAdvert),
    /// A client's job spec.
    Job(JobSpec),
    /// An orchestrator's call for bids.
    CallForBids(CallForBids),
    /// A provider's bid.
    Bid(Bid),
    /// A provider's decline.
    Decline(Decline),
    /// An orchestrator's award.
    Award(Award),
    /// A job status.
    Status(JobStatus),
    /// A provider's signed result.
    Result(JobResult),
    /// A client's cancel.
    Cancel(Cancel),
    /// A signed receipt.
    Receipt(SignedReceipt),
    /// A live log chunk.
    Log(LogChunk),
    /// A request for part of an output file.
    Fetch(FetchOutput),
    /// A part of an output file.
    Chunk(OutputChunk),
    /// A joining peer's request for adverts.
    AdvertSync(AdvertSync),
    /// An answer to it: advert envelopes in a bundle.
    AdvertBundle(AdvertBundle),
}

impl Message {
    /// The kind this message travels as.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Advert(_) => Kind::Advert,
            Message::Job(_) => Kind::Job,
            Message::CallForBids(_) => Kind::CallForBids,
            Message::Bid(_) => Kind::Bid,
            Message::Decline(_) => Kind::Decline,
            Message::Award(_) => Kind::Award,
            Message::Status(_) => Kind::Status,
            Message::Result(_) => Kind::Result,
            Message::Cancel(_) => Kind::Cancel,
            Message::Receipt(_) => Kind::Receipt,
            Message::Log(_) => Kind::Log,
            Message::Fetch(_) => Kind::Fetch,
            Message::Chunk(_) => Kind::Chunk,
            Message::AdvertSync(_) => Kind::AdvertSync,
            Message::AdvertBundle(_) => Kind::AdvertBundle,
        }
    }

    fn encode_payload(&self) -> Vec<u8> {
        match self {
            Message::Advert(m) => codec::encode(m),
            Message::Job(m) => codec::encode(m),
            Message::CallForBids(m) => codec::encode(m),
            Message::Bid(m) => codec::encode(m),
            Message::Decline(m) => codec::encode(m),
            Message::Award(m) => codec::encode(m),
            Message::Status(m) => codec::encode(m),
            Message::Result(m) => codec::encode(m),
            Message::Cancel(m) => codec::encode(m),
            Message::Receipt(m) => codec::encode(m),
            Message::Log(m) => codec::encode(m),
            Message::Fetch(m) => codec::encode(m),
            Message::Chunk(m) => codec::encode(m),
            Message::AdvertSync(m) => codec::encode(m),
            Message::AdvertBundle(m) => codec::encode(m),
        }
    }

    fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
        let limit = kind.max_payload_bytes();
        Ok(match kind {
            Kind::Advert => Message::Advert(codec::decode(payload, limit)?),
            Kind::Job => Message::Job(codec::decode(payload, limit)?),
            Kind::CallForBids => Message::CallForBids(codec::decode(payload, limit)?),
            Kind::Bid => Message::Bid(codec::decode(payload, limit)?),
            Kind::Decline => Message::Decline(codec::decode(payload, limit)?),
            Kind::Award => Message::Award(codec::decode(payload, limit)?),
            Kind::Status => Message::Status(codec::decode(payload, limit)?),
            Kind::Result => Message::Result(codec::decode(payload, limit)?),
            Kind::Cancel => Message::Cancel(codec::decode(payload, limit)?),
            Kind::Receipt => Message::Receipt(codec::decode(payload, limit)?),
            Kind::Log => Message::Log(codec::decode(payload, limit)?),
            Kind::Fetch => Message::Fetch(codec::decode(payload, limit)?),
            Kind::Chunk => Message::Chunk(codec::decode(payload, limit)?),
            // Their counts are checked here, before anything works through
            // them: the payload limit alone would let a bundle hold a
            // million empty entries.
            Kind::AdvertSync => {
                let m: AdvertSync = codec::decode(payload, limit)?;
                if !m.within_limits() {
                    return Err(DecodeError::Malformed(format!(
                        "advert sync lists {} adverts, over the limit of {}",
                        m.known.len(),
                        advert_sync::MAX_SYNC_KNOWN
                    )));
                }
                Message::AdvertSync(m)
            }
            Kind::AdvertBundle => {
                let m: AdvertBundle = codec::decode(payload, limit)?;
                if !m.within_limits() {
                    return Err(DecodeError::Malformed(format!(
                        "advert bundle holds {} envelopes, over the limit of {}",
                        m.adverts.len(),
                        advert_sync::MAX_BUNDLE_ADVERTS
                    )));
                }
                Message::AdvertBundle(m)
            }
        })
    }
}

/// A message as it travels: see the module documentation for what is signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The protocol version of the signer ([`PROTOCOL_VERSION`]).
    pub version: u16,
    /// The kind of message in `payload`.
    pub kind: Kind,
    /// The signer's clock when it sealed the envelope.
    pub timestamp: Timestamp,
    /// Who signed it.
    pub signer: NodeId,
    /// The message, encoded.
    pub payload: Vec<u8>,
    /// The signer's ed25519 signature over the signed bytes.
    pub signature: Signature,
}

/// Why bytes from the network were dropped. Each variant is a metrics label.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes, or the payload, are over their limit.
    #[error("envelope too large: {len} bytes, limit {limit}")]
    TooLarge {
        /// Their length.
        len: usize,
        /// The limit they broke.
        limit: usize,
    },
    /// The bytes do not decode as an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The signer speaks another protocol version.
    #[error("unknown protocol version {0}, this node speaks {PROTOCOL_VERSION}")]
    UnknownVersion(u16),
    /// The signature does not verify.
    #[error("bad signature on a {0} message")]
    BadSignature(Kind),
    /// The payload does not decode as its kind's message, or breaks its bounds.
    #[error("malformed {kind} payload: {reason}")]
    MalformedPayload {
        /// The kind the envelope claims.
        kind: Kind,
        /// What is wrong with it.
        reason: String,
    },
    /// Timestamped further ahead of our clock than the allowed skew.
    #[error("{kind} message timestamped {skew_ms} ms in the future")]
    FromTheFuture {
        /// The message's kind.
        kind: Kind,
        /// How far ahead, in milliseconds.
        skew_ms: u64,
    },
    /// Older than its kind may be.
    #[error("stale {kind} message, {age_ms} ms old")]
    Stale {
        /// The message's kind.
        kind: Kind,
        /// How old, in milliseconds.
        age_ms: u64,
    },
}

impl Rejection {
    /// Every label `label` gives, so counters can start at zero.
    pub const LABELS: [&'static str; 7] = [
        "too_large",
        "malformed",
        "unknown_version",
        "bad_signature",
        "malformed_payload",
        "from_the_future",
        "stale",
    ];

    /// A short label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownVersion(_) => "unknown_version",
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::MalformedPayload { .. } => "malformed_payload",
            Rejection::FromTheFuture { .. } => "from_the_future",
            Rejection::Stale { .. } => "stale",
        }
    }
}

fn signing_bytes(
    version: u16,
    kind: Kind,
    timestamp: Timestamp,
    signer: &NodeId,
    payload: &[u8],
) -> Vec<u8> {
    let name = kind.name().as_bytes();
    let mut out = Vec::with_capacity(12 + name.len() + 1 + 2 + 8 + 32 + payload.len());
    out.extend_from_slice(b"modchain/v1/");
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&timestamp.0.to_le_bytes());
    out.extend_from_slice(&signer.0);
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `message` as `key` at `now`.
    #[must_use]
    pub fn seal(key: &Keypair, now: Timestamp, message: Message) -> Signed {
        let kind = message.kind();
        let payload = message.encode_payload();
        let signer = key.node_id();
        let signature = key.sign(&signing_bytes(
            PROTOCOL_VERSION,
            kind,
            now,
            &signer,
            &payload,
        ));
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            kind,
            timestamp: now,
            signer,
            payload,
            signature,
        };
        let id = envelope.id();
        Signed {
            envelope,
            message,
            id,
        }
    }

    /// The envelope as it travels on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// The envelope's id: the digest of its encoded bytes.
    pub fn id(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// Decodes an envelope from network bytes without checking it.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, Rejection> {
        let limit = max_envelope_bytes();
        codec::decode::<Envelope>(bytes, limit).map_err(|e| match e {
            DecodeError::TooLarge { len, limit } => Rejection::TooLarge { len, limit },
            other => Rejection::Malformed(other.to_string()),
        })
    }

    /// Checks version, payload size, signature and payload encoding. Does not
    /// look at the clock: see [`Signed::check_time`].
    pub fn verify(self) -> Result<Signed, Rejection> {
        if self.version != PROTOCOL_VERSION {
            return Err(Rejection::UnknownVersion(self.version));
        }
        let limit = self.kind.max_payload_bytes();
        if self.payload.len() > limit {
            return Err(Rejection::TooLarge {
                len: self.payload.len(),
                limit,
            });
        }
        let signed = signing_bytes(
            self.version,
            self.kind,
            self.timestamp,
            &self.signer,
            &self.payload,
        );
        if !self.signer.verify(&signed, &self.signature) {
            return Err(Rejection::BadSignature(self.kind));
        }
        let message = Message::decode_payload(self.kind, &self.payload).map_err(|e| {
            Rejection::MalformedPayload {
                kind: self.kind,
                reason: e.to_string(),
            }
        })?;
        let id = self.id();
        Ok(Signed {
            envelope: self,
            message,
            id,
        })
    }

    /// Decode, verify and check the time in one step: the path for bytes off the wire.
    pub fn open(bytes: &[u8], now: Timestamp) -> Result<Signed, Rejection> {
        let signed = Self::decode(bytes)?.verify()?;
        signed.check_time(now)?;
        Ok(signed)
    }
}

/// A message whose signature has been checked. Only [`Envelope::seal`] and
/// [`Envelope::verify`] make one, so holding a `Signed` is proof of both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    envelope: Envelope,
    message: Message,
    id: Digest,
}

impl Signed {
    /// Who signed the message.
    pub fn signer(&self) -> NodeId {
        self.envelope.signer
    }
    /// The kind of message.
    pub fn kind(&self) -> Kind {
        self.envelope.kind
    }
    /// The signer's clock when it sealed the message.
    pub fn timestamp(&self) -> Timestamp {
        self.envelope.timestamp
    }
    /// The decoded message.
    pub fn message(&self) -> &Message {
        &self.message
    }
    /// The envelope as it travelled.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    /// The envelope as it travelled, by value.
    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }
    /// Digest of the envelope's bytes: the job id for a `Job`, the bid id for a `Bid`.
    pub fn id(&self) -> Digest {
        self.id
    }
    /// The envelope as it travels on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.envelope.to_bytes()
    }

    /// Rejects messages from a clock too far ahead, and direct messages too
    /// old to act on. Adverts carry their own expiry and receipts are valid
    /// forever, so only the future check applies to them.
    pub fn check_time(&self, now: Timestamp) -> Result<(), Rejection> {
        let kind = self.kind();
        let ts = self.timestamp();
        if ts.since(now) > MAX_CLOCK_SKEW_MS {
            return Err(Rejection::FromTheFuture {
                kind,
                skew_ms: ts.since(now),
            });
        }
        if kind.is_direct() && now.since(ts) > MAX_DIRECT_MESSAGE_AGE_MS {
            return Err(Rejection::Stale {
                kind,
                age_ms: now.since(ts),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert_sync::{KnownAdvert, MAX_BUNDLE_ADVERTS, MAX_BUNDLE_BYTES, MAX_SYNC_KNOWN};
    use crate::bytes::to_hex;
    use crate::job::Cancel;

    /// The test vector of docs/protocol.md §3.3: the spec and the code must
    /// agree byte for byte, so a change to either shows here.
    #[test]
    fn test_vector_of_the_spec_encodes_byte_for_byte() {
        let key = Keypair::from_seed(1);
        let signed = Envelope::seal(
            &key,
            Timestamp(1_764_000_000_000),
            Message::Cancel(Cancel {
                job_id: Digest([0x07; 32]),
                reason: "x".into(),
            }),
        );
        let expected = concat!(
            "04",                 // version 4
            "08",                 // kind 8 = Cancel
            "fd00e897b69a010000", // timestamp (varint u64)
            "20bdf5d2e6755201de3209bbabf916664f0e3ad09e3cac6ac92fb0224cdd6c5f39",
            "23", // payload length 35
            "20",
            "0707070707070707070707070707070707070707070707070707070707070707",
            "0178",
            "4016e3672dff5c21d112bd9f23c20fde694e253f6d54d81cb556292a1326d8c909",
            "072f7f0e75cf3e8dd4608d9c5968ff46ce721013848dc1003796d9762fcf8605",
        );
        assert_eq!(to_hex(&signed.to_bytes()), expected);
        assert_eq!(
            signed.id().to_hex(),
            "69448156e8e57816d3e8646ea2cf49e0ac516fbab9f7e9da685fc896ed5ffd04"
        );
    }

    #[test]
    fn packing_keeps_every_bundle_within_its_limits() {
        // Typical adverts: the count binds.
        let small = AdvertBundle::pack((0..2500).map(|i| vec![i as u8; 205]));
        assert_eq!(
            small.iter().map(|b| b.adverts.len()).collect::<Vec<_>>(),
            [
                MAX_BUNDLE_ADVERTS,
                MAX_BUNDLE_ADVERTS,
                2500 - 2 * MAX_BUNDLE_ADVERTS
            ]
        );
        // The largest adverts: the bytes bind.
        let large = AdvertBundle::pack((0..40).map(|_| vec![7u8; 60 * 1024 + 116]));
        assert_eq!(large.iter().map(|b| b.adverts.len()).sum::<usize>(), 40);
        assert!(large.len() >= 3);
        for b in small.iter().chain(&large) {
            assert!(b.within_limits());
            assert!(codec::encode(b).len() <= Kind::AdvertBundle.max_payload_bytes());
        }
        assert!(AdvertBundle::pack(Vec::new()).is_empty());
        assert!(AdvertBundle::pack([vec![0; MAX_BUNDLE_BYTES]]).is_empty());
    }

    #[test]
    fn every_gossiped_kind_fits_in_a_gossip_message() {
        for kind in Kind::ALL {
            if crate::authority::rule_for(kind).topic.is_some() {
                assert!(
                    kind.max_payload_bytes() + ENVELOPE_OVERHEAD + GOSSIP_FRAMING_BYTES
                        <= MAX_GOSSIP_BYTES,
                    "{kind} is too large for gossip"
                );
            }
        }
    }

    #[test]
    fn a_full_sync_request_fits_its_payload_limit() {
        let known = (0..MAX_SYNC_KNOWN as u64)
            .map(|i| KnownAdvert {
                node: Keypair::from_seed(i % 7).node_id(),
                sequence: u64::MAX - i,
            })
            .collect();
        let sync = AdvertSync { known };
        assert!(sync.within_limits());
        assert!(codec::encode(&sync).len() <= Kind::AdvertSync.max_payload_bytes());
    }

    #[test]
    fn new_kinds_come_after_every_older_one_on_the_wire() {
        // A kind travels as its index: the older kinds keep theirs.
        assert_eq!(codec::encode(&Kind::Chunk), [12]);
        assert_eq!(codec::encode(&Kind::AdvertSync), [13]);
        assert_eq!(codec::encode(&Kind::AdvertBundle), [14]);
        assert_eq!(Kind::ALL.last(), Some(&Kind::AdvertBundle));
    }

    #[test]
    fn counts_over_the_limit_are_refused_before_anyone_reads_them() {
        let key = Keypair::from_seed(1);
        let now = Timestamp::from_millis(1_700_000_000_000);
        let over = AdvertBundle {
            adverts: vec![Vec::new(); MAX_BUNDLE_ADVERTS + 1],
        };
        let bytes = Envelope::seal(&key, now, Message::AdvertBundle(over)).to_bytes();
        assert!(matches!(
            Envelope::open(&bytes, now),
            Err(Rejection::MalformedPayload {
                kind: Kind::AdvertBundle,
                ..
            })
        ));
        let known = vec![
            KnownAdvert {
                node: key.node_id(),
                sequence: 1,
            };
            MAX_SYNC_KNOWN + 1
        ];
        let bytes = Envelope::seal(&key, now, Message::AdvertSync(AdvertSync { known })).to_bytes();
        assert!(matches!(
            Envelope::open(&bytes, now),
            Err(Rejection::MalformedPayload {
                kind: Kind::AdvertSync,
                ..
            })
        ));
        // Within the limits, both open; a sync is a direct message and
        // goes stale as one.
        let ok = Envelope::seal(&key, now, Message::AdvertSync(AdvertSync::default())).to_bytes();
        assert!(Envelope::open(&ok, now).is_ok());
        assert!(matches!(
            Envelope::open(&ok, now.plus(11 * 60_000)),
            Err(Rejection::Stale { .. })
        ));
    }
}
