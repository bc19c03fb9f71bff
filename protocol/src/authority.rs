//! Who may send what, and by which channel: the rules that make a stranger's
//! message count only when its signer has the standing to send it.
//!
//! A signature proves who sent a message, not that they may. Each kind has
//! one rule, written down once here ([`RULES`]) and enforced where the
//! message is routed: gossip topics accept only their kinds (the network
//! layer's verdict), a provider acts on calls for bids only from an
//! orchestrator elected for the job, and a receipt counts only with the
//! award of such an orchestrator inside it.

use crate::action::Topic;
use crate::auction::AwardCheck;
use crate::digest::ReceiptId;
use crate::envelope::{Envelope, Kind, Message, Signed};
use crate::receipt::{Outcome, ReceiptError, SignedReceipt};
use crate::time::{SECOND, Timestamp};

/// How far ahead of its call an orchestrator may set the bid deadline. A
/// provider holds capacity for a bid until then (plus its grace), so a far
/// deadline would lock the capacity up; calls past this are declined.
pub const MAX_BID_WINDOW_MS: u64 = 30 * SECOND;

/// How far past its signing time a job may ask to be started. The
/// orchestrator queues it, and every peer remembers it against replay, until
/// then; a job asking for more is refused.
pub const MAX_START_WINDOW_MS: u64 = crate::job::limits::MAX_TIMEOUT_MS;

/// How a kind of message may travel and who may sign it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The kind.
    pub kind: Kind,
    /// The gossip topic that carries it, if any travels by gossip.
    pub topic: Option<Topic>,
    /// Whether it travels as a direct message.
    pub direct: bool,
    /// Who may sign it, in words (the checks are in the roles).
    pub sender: &'static str,
}

/// One rule per kind, in wire order. `docs/protocol.md` lists the same table.
pub const RULES: [Rule; 15] = [
    rule(
        Kind::Advert,
        Some(Topic::Adverts),
        false,
        "any peer, about itself (direct only inside an advert bundle)",
    ),
    rule(
        Kind::Job,
        None,
        true,
        "the job's client, to an orchestrator it sees elected for the job",
    ),
    rule(
        Kind::CallForBids,
        None,
        true,
        "an orchestrator the provider sees elected for the job in this epoch or the one before",
    ),
    rule(
        Kind::Bid,
        None,
        true,
        "a provider the orchestrator called for this job and round",
    ),
    rule(
        Kind::Decline,
        None,
        true,
        "a provider the orchestrator called for this job and round",
    ),
    rule(
        Kind::Award,
        None,
        true,
        "the orchestrator that called for bids (providers) or that the client submitted to",
    ),
    rule(
        Kind::Status,
        None,
        true,
        "the job's orchestrator or its awarded provider",
    ),
    rule(Kind::Result, None, true, "the job's awarded provider"),
    rule(Kind::Cancel, None, true, "the job's client"),
    rule(
        Kind::Receipt,
        Some(Topic::Receipts),
        true,
        "anyone relays it; it counts only with the signatures its outcome needs and the award of an orchestrator elected for the job",
    ),
    rule(Kind::Log, None, true, "the job's awarded provider"),
    rule(Kind::Fetch, None, true, "the job's client"),
    rule(Kind::Chunk, None, true, "the provider the client asked"),
    rule(Kind::AdvertSync, None, true, "any peer"),
    rule(
        Kind::AdvertBundle,
        None,
        true,
        "a peer this one asked, in answer",
    ),
];

const fn rule(kind: Kind, topic: Option<Topic>, direct: bool, sender: &'static str) -> Rule {
    Rule {
        kind,
        topic,
        direct,
        sender,
    }
}

/// The rule for `kind`.
pub fn rule_for(kind: Kind) -> &'static Rule {
    // RULES is in wire order, one per kind (a unit test holds it to that).
    &RULES[kind as usize]
}

/// Whether a message of `kind` may arrive by gossip on `topic`: each topic
/// accepts only its own kinds, so nothing meant for one peer is flooded to
/// all of them.
pub fn gossip_accepts(topic: Topic, kind: Kind) -> bool {
    rule_for(kind).topic == Some(topic)
}

impl SignedReceipt {
    /// Checks the receipt as any peer can from the receipt alone: every
    /// signature its outcome requires, and the award it carries (signed by
    /// the orchestrator it names, for this job, round, client and provider,
    /// following the selection rule, and the very award the parties signed
    /// for). Whether that orchestrator was elected is the peer's to judge
    /// from its view of the election: see [`award_time`](Self::award).
    /// Returns the receipt's id.
    pub fn verify(&self) -> Result<ReceiptId, ReceiptError> {
        let id = self.verify_signatures()?;
        self.award()?;
        Ok(id)
    }

    /// The award the receipt carries, checked against the receipt.
    pub fn award(&self) -> Result<Signed, ReceiptError> {
        let bad = |e: &dyn std::fmt::Display| ReceiptError::BadAward(e.to_string());
        let envelope = Envelope::decode(&self.award).map_err(|e| bad(&e))?;
        if envelope.kind != Kind::Award {
            return Err(ReceiptError::BadAward(format!(
                "a {} message, not an award",
                envelope.kind
            )));
        }
        let signed = envelope.verify().map_err(|e| bad(&e))?;
        let Message::Award(a) = signed.message() else {
            return Err(ReceiptError::BadAward("not an award".into()));
        };
        let r = &self.receipt;
        let mismatch = [
            (signed.id() != r.award_id, "award id"),
            (signed.signer() != r.orchestrator, "orchestrator"),
            (a.job_id != r.job_id, "job"),
            (a.attempt != r.attempt, "round"),
            (a.client != r.client, "client"),
            (a.winner != r.provider, "provider"),
        ]
        .into_iter()
        .find_map(|(wrong, what)| wrong.then_some(what));
        if let Some(what) = mismatch {
            return Err(ReceiptError::AwardMismatch(what));
        }
        match a.check() {
            AwardCheck::Valid => {}
            other => return Err(ReceiptError::BadAward(format!("{other:?}"))),
        }
        if let Outcome::Executed(_) = r.outcome {
            let cap = a
                .bids
                .iter()
                .find(|b| b.bid_id == a.winning_bid)
                .map(|b| b.max_total);
            if cap.is_none_or(|cap| r.price > cap) {
                return Err(ReceiptError::OverBid);
            }
        }
        Ok(signed)
    }

    /// When the award this receipt settles was signed, if it is valid.
    pub fn award_time(&self) -> Result<Timestamp, ReceiptError> {
        self.award().map(|a| a.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_kind_in_wire_order() {
        assert_eq!(RULES.len(), Kind::ALL.len());
        for (rule, kind) in RULES.iter().zip(Kind::ALL) {
            assert_eq!(rule.kind, kind);
            assert_eq!(rule_for(kind).kind, kind);
            assert!(
                rule.topic.is_some() || rule.direct,
                "{kind} must travel somehow"
            );
        }
    }

    #[test]
    fn each_topic_takes_only_its_kinds() {
        let on = |t| {
            Kind::ALL
                .into_iter()
                .filter(|k| gossip_accepts(t, *k))
                .collect::<Vec<_>>()
        };
        assert_eq!(on(Topic::Adverts), vec![Kind::Advert]);
        assert_eq!(on(Topic::Receipts), vec![Kind::Receipt]);
    }
}
