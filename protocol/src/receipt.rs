//! Receipts: the signed record every finished job leaves behind.
//!
//! A receipt for work done is signed by both parties, client and provider; a
//! failure receipt (the provider missed its deadline or vanished) is signed by
//! the orchestrator that saw it. Either kind carries the award it settles, as
//! its orchestrator signed it, and names it: two throwaway keys cannot make
//! a receipt that counts, since they cannot make an elected orchestrator's
//! award (see `authority` for the checks). Anything else counts for nothing. Each party
//! signs `"modchain/v1/receipt-body" || 0x00 || encode(receipt)`, a domain of
//! its own, so no envelope signature can pass for a receipt signature.

use crate::auction::Award;
use crate::codec;
use crate::digest::{Digest, JobId, ReceiptId};
use crate::identity::{Keypair, NodeId, Signature};
use crate::job::{ExitStatus, JobResult, Usage};
use crate::time::Timestamp;
use crate::vocabulary::Credits;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const RECEIPT_DOMAIN: &[u8] = b"modchain/v1/receipt-body\0";

/// Why a provider was reported as failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureReason {
    /// No result by the execution deadline.
    MissedDeadline,
    /// No status report within the heartbeat window, or the connection dropped.
    Unresponsive,
}

impl FailureReason {
    /// The reason in words, for a person.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::MissedDeadline => "missed its deadline",
            FailureReason::Unresponsive => "stopped responding",
        }
    }
}

/// How a job ended, as the receipt records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The provider ran the job and delivered a result (whatever its exit status).
    Executed(ExitStatus),
    /// The provider did not deliver; reported by the orchestrator.
    ProviderFailed(FailureReason),
}

/// The record of one job run (or failed), signed by the parties.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The job settled.
    pub job_id: JobId,
    /// The auction round that ran it.
    pub attempt: u32,
    /// The job's client.
    pub client: NodeId,
    /// The provider that ran it (or failed to).
    pub provider: NodeId,
    /// The orchestrator that awarded it.
    pub orchestrator: NodeId,
    /// The id of the award envelope this receipt settles (the digest of its
    /// encoding, as [`SignedReceipt::award`] carries it).
    pub award_id: Digest,
    /// What the client pays the provider.
    pub price: Credits,
    /// What the job used.
    pub usage: Usage,
    /// How it ended.
    pub outcome: Outcome,
    /// Digest of the signed result, for executed jobs.
    pub result_digest: Option<Digest>,
    /// When the receipt was made.
    pub issued_at: Timestamp,
}

impl Receipt {
    /// The receipt that settles `result` under `award`. Client and provider
    /// each compute it and must get the same bytes, or the signatures will
    /// not agree. `orchestrator` is the award's signer and `award_id` the id
    /// of its signed envelope.
    pub fn for_result(
        award: &Award,
        orchestrator: NodeId,
        award_id: Digest,
        result: &JobResult,
    ) -> Receipt {
        let cap = award
            .bids
            .iter()
            .find(|b| b.bid_id == award.winning_bid)
            .map(|b| b.max_total)
            .unwrap_or(Credits::ZERO);
        let price = match result.exit {
            // Nothing ran: nothing to pay.
            ExitStatus::Rejected(_) => Credits::ZERO,
            _ => award
                .quote
                .charge(result.usage.wall_ms, result.usage.tokens)
                .min(cap),
        };
        Receipt {
            job_id: award.job_id,
            attempt: award.attempt,
            client: award.client,
            provider: award.winner,
            orchestrator,
            award_id,
            price,
            usage: result.usage,
            outcome: Outcome::Executed(result.exit.clone()),
            result_digest: Some(result.digest()),
            issued_at: result.finished_at,
        }
    }

    /// A failure receipt for the winner of `award`.
    pub fn for_failure(
        award: &Award,
        orchestrator: NodeId,
        award_id: Digest,
        reason: FailureReason,
        now: Timestamp,
    ) -> Receipt {
        Receipt {
            job_id: award.job_id,
            attempt: award.attempt,
            client: award.client,
            provider: award.winner,
            orchestrator,
            award_id,
            price: Credits::ZERO,
            usage: Usage::default(),
            outcome: Outcome::ProviderFailed(reason),
            result_digest: None,
            issued_at: now,
        }
    }

    /// What each party signs: the domain, then the encoded receipt.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = RECEIPT_DOMAIN.to_vec();
        out.extend_from_slice(&codec::encode(self));
        out
    }

    /// The receipt's id: the digest of its encoding.
    pub fn id(&self) -> ReceiptId {
        Digest::of(&codec::encode(self))
    }

    /// Signs the receipt with `key`.
    pub fn sign(&self, key: &Keypair) -> Signature {
        key.sign(&self.signing_bytes())
    }

    /// Whether it reports a provider failure.
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::ProviderFailed(_))
    }
}

/// A receipt with the signatures its outcome requires.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// The client's signature, required for executed jobs.
    pub client_signature: Option<Signature>,
    /// The provider's signature, required for executed jobs.
    pub provider_signature: Option<Signature>,
    /// The orchestrator's signature, required for failures.
    pub orchestrator_signature: Option<Signature>,
    /// The award the receipt settles: the orchestrator's signed `Award`
    /// envelope, encoded as it travelled. Bytes rather than an envelope so
    /// this module need not import the envelope module, which imports it.
    pub award: Vec<u8>,
}

/// Why a receipt does not count.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReceiptError {
    /// An executed job's receipt without the client's signature.
    #[error("receipt lacks the client's signature")]
    MissingClientSignature,
    /// An executed job's receipt without the provider's signature.
    #[error("receipt lacks the provider's signature")]
    MissingProviderSignature,
    /// A failure receipt without the orchestrator's signature.
    #[error("failure receipt lacks the orchestrator's signature")]
    MissingOrchestratorSignature,
    /// A signature does not verify.
    #[error("a signature on the receipt does not verify")]
    BadSignature,
    /// A failure receipt charges something.
    #[error("a failure receipt must not charge anything")]
    FailureWithPrice,
    /// The award it carries is not a valid signed award.
    #[error("the receipt's award is invalid: {0}")]
    BadAward(String),
    /// The award it carries is for another job, round, client, provider or
    /// orchestrator, or is not the one the receipt names.
    #[error("the receipt does not match its award: {0}")]
    AwardMismatch(&'static str),
    /// The receipt charges more than the winning bid allowed.
    #[error("the receipt charges more than the winning bid's maximum")]
    OverBid,
}

impl SignedReceipt {
    /// The (signer, signature) pairs that must verify for this receipt to count.
    fn required(&self) -> Result<Vec<(NodeId, Signature)>, ReceiptError> {
        let r = &self.receipt;
        if r.is_failure() {
            if r.price != Credits::ZERO {
                return Err(ReceiptError::FailureWithPrice);
            }
            let sig = self
                .orchestrator_signature
                .ok_or(ReceiptError::MissingOrchestratorSignature)?;
            Ok(vec![(r.orchestrator, sig)])
        } else {
            let c = self
                .client_signature
                .ok_or(ReceiptError::MissingClientSignature)?;
            let p = self
                .provider_signature
                .ok_or(ReceiptError::MissingProviderSignature)?;
            Ok(vec![(r.client, c), (r.provider, p)])
        }
    }

    /// Checks every required signature (strictly, see
    /// [`NodeId::verify`]). The award is checked by
    /// [`verify`](Self::verify), which calls this.
    pub(crate) fn verify_signatures(&self) -> Result<ReceiptId, ReceiptError> {
        let bytes = self.receipt.signing_bytes();
        for (who, sig) in self.required()? {
            if !who.verify(&bytes, &sig) {
                return Err(ReceiptError::BadSignature);
            }
        }
        Ok(self.receipt.id())
    }

    /// The receipt's id.
    pub fn id(&self) -> ReceiptId {
        self.receipt.id()
    }
}
