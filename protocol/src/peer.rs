//! A whole peer: the client, provider and orchestrator roles, the advert
//! table and the election, behind one sans-IO interface. The node drives a
//! `Peer` from libp2p and tokio; the simulator and the test network drive it
//! from an event queue. Routing a message to the roles lives here, once.

use crate::action::{Action, Event, Topic};
use crate::advert::{AdapterInfo, AdvertBook, CapabilityAdvert};
use crate::authority::{MAX_BID_WINDOW_MS, MAX_START_WINDOW_MS};
use crate::client::{Client, ClientConfig, ClientJob, SubmitError};
use crate::digest::JobId;
use crate::election::{Election, ElectionConfig};
use crate::envelope::{
    Envelope, Kind, MAX_CLOCK_SKEW_MS, MAX_DIRECT_MESSAGE_AGE_MS, Message, Rejection, Signed,
};
use crate::identity::{Keypair, NodeId};
use crate::job::{JobSpec, JobState, JobStatus, Refusal};
use crate::orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorContext, ReputationTable};
use crate::provider::{ExecutionReport, Provider, ProviderConfig};
use crate::replay::ReplayCache;
use crate::time::{MINUTE, SECOND, Timestamp};
use std::collections::{BTreeMap, VecDeque};

/// What a peer is: its roles and their configuration.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// How this peer computes the elected orchestrators.
    pub election: ElectionConfig,
    /// Stand as orchestrator candidate with this configuration.
    pub orchestrator: Option<OrchestratorConfig>,
    /// Sell capacity with this configuration.
    pub provider: Option<ProviderConfig>,
    /// The client role's configuration (every peer is a client).
    pub client: ClientConfig,
    /// Hardware and software description; sequence, expiry, prices, free
    /// capacity, adapters and candidacy are filled in by the peer.
    pub advert: CapabilityAdvert,
    /// How long our adverts stay valid.
    pub advert_ttl_ms: u64,
    /// How often we republish our advert unchanged.
    pub advert_interval_ms: u64,
    /// Whether calls for bids and receipts count only from orchestrators
    /// this peer saw elected (§20 of the protocol). Always on in a node;
    /// off only for a driver that does not hand every peer the adverts
    /// an election is drawn from (the simulator's model engine).
    pub check_seats: bool,
    /// Most adverts held (see [`AdvertBook::insert_ranked`] for which stay
    /// when it is full).
    pub max_adverts: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            election: ElectionConfig::default(),
            orchestrator: None,
            provider: None,
            client: ClientConfig::default(),
            advert: CapabilityAdvert::default(),
            advert_ttl_ms: 3 * MINUTE,
            advert_interval_ms: MINUTE,
            check_seats: true,
            max_adverts: crate::advert::DEFAULT_MAX_ADVERTS,
        }
    }
}

/// Why received messages were dropped, and what arrived: the node's counters.
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    /// Messages routed, per kind.
    pub received: BTreeMap<Kind, u64>,
    /// Bytes dropped, per rejection label.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Adverts refused, per reason.
    pub adverts_rejected: BTreeMap<&'static str, u64>,
    /// Authentic messages refused because their signer had no standing to
    /// send them, or asked for more than the protocol allows, per reason
    /// (see [`Refused`]).
    pub refused: BTreeMap<&'static str, u64>,
}

/// Why an authentic message was refused: each variant is a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A call for bids from a peer this one does not see elected.
    UnelectedCall,
    /// A call for bids whose bid deadline is further than
    /// [`MAX_BID_WINDOW_MS`](crate::authority::MAX_BID_WINDOW_MS).
    FarDeadline,
    /// A job (or a call carrying one) whose start-by time is further than
    /// [`MAX_START_WINDOW_MS`](crate::authority::MAX_START_WINDOW_MS).
    FarStartBy,
    /// A job, call or award already taken once.
    Replayed,
    /// A receipt without valid signatures or award.
    InvalidReceipt,
    /// A valid receipt whose award's signer this peer did not see elected.
    UnelectedAward,
}

impl Refused {
    /// Every reason, so counters can start at zero.
    pub const ALL: [Refused; 6] = [
        Refused::UnelectedCall,
        Refused::FarDeadline,
        Refused::FarStartBy,
        Refused::Replayed,
        Refused::InvalidReceipt,
        Refused::UnelectedAward,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::UnelectedCall => "unelected_call",
            Refused::FarDeadline => "far_deadline",
            Refused::FarStartBy => "far_start_by",
            Refused::Replayed => "replayed",
            Refused::InvalidReceipt => "invalid_receipt",
            Refused::UnelectedAward => "unelected_award",
        }
    }
}

/// One peer of the network: the client role always, the provider and
/// orchestrator roles when configured, the advert table and the election,
/// behind one sans-IO interface. It never reads a clock or touches a
/// socket; its driver passes `now` into every call.
///
/// Its methods come in four kinds:
///
/// - **handle** (input): [`start`](Self::start) once, then
///   [`handle_bytes`](Self::handle_bytes) (or [`open`](Self::open) +
///   [`handle_signed`](Self::handle_signed)) for messages from the network,
///   [`submit`](Self::submit) / [`cancel`](Self::cancel) /
///   [`fetch_output`](Self::fetch_output) for the user,
///   [`execution_finished`](Self::execution_finished) /
///   [`log_output`](Self::log_output) for the adapters,
///   [`peer_gone`](Self::peer_gone) / [`rejoined`](Self::rejoined) for the
///   connections, and the `set_*` calls for what the driver computes
///   (reputation, adapters, admission);
/// - **poll** (output): [`poll_action`](Self::poll_action);
/// - **timeout**: [`poll_timeout`](Self::poll_timeout) and
///   [`handle_timeout`](Self::handle_timeout);
/// - **read**: [`id`](Self::id), [`job`](Self::job), [`stats`](Self::stats),
///   [`adverts`](Self::adverts), [`elected`](Self::elected), … (no effect).
///
/// The order a driver must keep: after every handle call and every
/// `handle_timeout`, drain `poll_action` until it returns `None` and
/// perform each action; then wait for the next input or the time
/// `poll_timeout` returns, whichever is first, and at that time call
/// `handle_timeout`. Actions left undrained are neither sent nor lost, only
/// late; a timeout handled early does nothing. `now` must not go back.
/// The crate documentation shows the loop in code.
#[derive(Debug)]
pub struct Peer {
    key: Keypair,
    me: NodeId,
    config: PeerConfig,
    adverts: AdvertBook,
    election: Election,
    reputation: ReputationTable,
    client: Client,
    provider: Option<Provider>,
    orchestrator: Option<Orchestrator>,
    advert_sequence: u64,
    next_advert_at: Timestamp,
    last_advert_at: Option<Timestamp>,
    actions: VecDeque<Action>,
    stats: PeerStats,
    replays: ReplayCache,
}

/// Republishing after a capacity change waits at least this long since the last advert.
const ADVERT_MIN_INTERVAL_MS: u64 = SECOND;

/// How long after (re)joining the network a peer advertises again: time for
/// its connections and gossip mesh to form (see [`Peer::rejoined`]).
pub const REJOIN_ADVERT_DELAY_MS: u64 = 2 * SECOND;

impl Peer {
    /// A peer with this key and these roles; it does nothing until
    /// [`start`](Self::start).
    #[must_use]
    pub fn new(key: Keypair, config: PeerConfig) -> Self {
        let me = key.node_id();
        Peer {
            client: Client::new(key.clone(), config.client.clone()),
            provider: config
                .provider
                .clone()
                .map(|c| Provider::new(key.clone(), c)),
            orchestrator: config
                .orchestrator
                .clone()
                .map(|c| Orchestrator::new(key.clone(), c)),
            election: Election::new(config.election.clone()),
            key,
            me,
            adverts: AdvertBook::with_cap(config.max_adverts),
            config,
            reputation: ReputationTable::new(),
            advert_sequence: 0,
            next_advert_at: Timestamp::ZERO,
            last_advert_at: None,
            actions: VecDeque::new(),
            stats: PeerStats::default(),
            replays: ReplayCache::default(),
        }
    }

    /// This peer's node id.
    pub fn id(&self) -> NodeId {
        self.me
    }
    /// This peer's signing key.
    pub fn key(&self) -> &Keypair {
        &self.key
    }
    /// The adverts this peer holds.
    pub fn adverts(&self) -> &AdvertBook {
        &self.adverts
    }
    /// Why received messages were dropped, and what arrived.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }
    /// The client role.
    pub fn client(&self) -> &Client {
        &self.client
    }
    /// The provider role, if configured.
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_ref()
    }
    /// The orchestrator role, if configured.
    pub fn orchestrator(&self) -> Option<&Orchestrator> {
        self.orchestrator.as_ref()
    }
    /// A job this peer's user submitted, by id.
    pub fn job(&self, id: &JobId) -> Option<&ClientJob> {
        self.client.job(id)
    }
    /// Reputation per node, as the driver last set it.
    pub fn reputation(&self) -> &ReputationTable {
        &self.reputation
    }

    /// The elected orchestrators at `now`.
    pub fn elected(&mut self, now: Timestamp) -> Vec<NodeId> {
        self.election.elected(now).to_vec()
    }

    /// This peer's view of the election.
    pub fn election(&self) -> &Election {
        &self.election
    }

    /// Reputations as last computed from the ledger.
    pub fn set_reputation(&mut self, table: ReputationTable) {
        self.reputation = table;
        self.refresh_candidates();
    }

    fn refresh_candidates(&mut self) {
        let cands: Vec<(NodeId, u32)> = self
            .adverts
            .candidates()
            .into_iter()
            .map(|n| (n, self.reputation.get(&n).copied().unwrap_or(0)))
            .collect();
        self.election.set_candidates(cands);
    }

    /// Our current advert, as we would publish it now.
    pub fn current_advert(&self, now: Timestamp) -> CapabilityAdvert {
        let mut ad = self.config.advert.clone();
        ad.sequence = self.advert_sequence;
        ad.expires_at = now.plus(self.config.advert_ttl_ms);
        ad.orchestrator_candidate = self.orchestrator.is_some();
        if let Some(p) = &self.provider {
            ad.prices = p.config().prices.clone();
            ad.adapters = p.config().adapters.clone();
            ad.free = p.free_capacity();
        } else {
            ad.adapters.clear();
            ad.free = Default::default();
        }
        ad
    }

    fn publish_advert(&mut self, now: Timestamp) {
        // Sequence numbers must grow across restarts too: start from the clock.
        self.advert_sequence = self.advert_sequence.max(now.0).saturating_add(1);
        let ad = self.current_advert(now);
        let signed = Envelope::seal(&self.key, now, Message::Advert(ad.clone()));
        let _ = self.adverts.insert(now, self.me, ad);
        self.refresh_candidates();
        self.actions.push_back(Action::Publish {
            topic: Topic::Adverts,
            message: signed,
        });
        self.last_advert_at = Some(now);
        self.next_advert_at = now.plus(self.config.advert_interval_ms);
    }

    /// The adapters this provider offers, with their models, changed:
    /// the next advert (within a second, as after a capacity change) says
    /// so. Returns whether anything changed; a peer that does not provide
    /// has nothing to change.
    pub fn set_adapters(&mut self, now: Timestamp, adapters: Vec<AdapterInfo>) -> bool {
        let Some(p) = self.provider.as_mut() else {
            return false;
        };
        if p.config().adapters == adapters {
            return false;
        }
        p.set_adapters(adapters);
        self.advertise_soon(now);
        true
    }

    /// Brings the next advert forward, at most one a second.
    fn advertise_soon(&mut self, now: Timestamp) {
        let earliest = self
            .last_advert_at
            .map_or(now, |t| t.plus(ADVERT_MIN_INTERVAL_MS));
        self.next_advert_at = self.next_advert_at.min(earliest.max(now));
    }

    /// Starts the peer: publishes its first advert.
    pub fn start(&mut self, now: Timestamp) {
        self.publish_advert(now);
    }

    /// The driver (re)joined the network (its first bootstrap peer
    /// answered): advertise again [`REJOIN_ADVERT_DELAY_MS`] later. The
    /// advert published before then reached only the peers connected at the
    /// time, and gossip hands no past messages to peers that join a mesh
    /// later; a peer that has not started has nothing to repeat.
    pub fn rejoined(&mut self, now: Timestamp) {
        if self.last_advert_at.is_some() {
            self.next_advert_at = self.next_advert_at.min(now.plus(REJOIN_ADVERT_DELAY_MS));
        }
    }

    /// Bytes from the network: decode, verify, route. Dropped messages are
    /// counted and returned as the rejection.
    pub fn handle_bytes(&mut self, now: Timestamp, bytes: &[u8]) -> Result<(), Rejection> {
        let signed = self.open(now, bytes)?;
        self.handle_signed(now, signed);
        Ok(())
    }

    /// Bytes from the network, decoded, verified and time-checked but not
    /// routed: for a driver that looks at a message before handing it to
    /// [`handle_signed`](Self::handle_signed) (an advert bundle it unpacks).
    /// Dropped messages are counted as in [`handle_bytes`](Self::handle_bytes).
    pub fn open(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Signed, Rejection> {
        Envelope::open(bytes, now).inspect_err(|r| {
            *self.stats.rejected.entry(r.label()).or_default() += 1;
        })
    }

    /// A verified advert: into the book (see [`AdvertBook::insert_ranked`]
    /// for who stays when it is full), and into the election when it
    /// changes the candidates.
    fn take_advert(&mut self, now: Timestamp, signer: NodeId, ad: &CapabilityAdvert) {
        // Only a change of candidacy can change the election.
        let was_candidate = self
            .adverts
            .get(&signer)
            .is_some_and(|a| a.orchestrator_candidate);
        // A full table may have pushed a candidate out for this one.
        let evicted_before = self.adverts.evicted();
        let reputation = &self.reputation;
        let inserted = self.adverts.insert_ranked(now, signer, ad.clone(), |n| {
            reputation.get(n).copied().unwrap_or(0)
        });
        let evicted = self.adverts.evicted() > evicted_before;
        match inserted {
            Ok(()) => {
                if was_candidate || ad.orchestrator_candidate || evicted {
                    self.refresh_candidates();
                }
            }
            Err(r) => {
                *self.stats.adverts_rejected.entry(r.label()).or_default() += 1;
            }
        }
    }

    /// A verified message (from the network or from ourselves).
    pub fn handle_signed(&mut self, now: Timestamp, msg: Signed) {
        *self.stats.received.entry(msg.kind()).or_default() += 1;
        if let Err(why) = self.authorise(now, &msg) {
            *self.stats.refused.entry(why.label()).or_default() += 1;
            return;
        }
        if let Message::Advert(ad) = msg.message() {
            // Before the reputation table is lent out below: the election
            // refreshed here reads it.
            self.take_advert(now, msg.signer(), ad);
            return;
        }
        let ctx_rep = std::mem::take(&mut self.reputation);
        match msg.message() {
            Message::Advert(_) => {}
            Message::Job(_) => {
                let accept = self.orchestrator.is_some() && self.recently_elected(now);
                if accept {
                    if let Some(o) = self.orchestrator.as_mut() {
                        let ctx = OrchestratorContext {
                            now,
                            adverts: &self.adverts,
                            reputation: &ctx_rep,
                        };
                        o.handle_message(&ctx, &msg);
                    }
                } else {
                    // Tell the client at once, as a typed refusal, so it
                    // moves to the next orchestrator without waiting.
                    let reply = Envelope::seal(
                        &self.key,
                        now,
                        Message::Status(JobStatus {
                            job_id: msg.id(),
                            attempt: 0,
                            state: JobState::Failed,
                            detail: format!(
                                "not an elected orchestrator: {} is not elected this epoch; resubmit to the next in the job's ranking",
                                self.me.short()
                            ),
                            seq: 0,
                            refusal: Some(Refusal::NotElected),
                        }),
                    );
                    self.actions.push_back(Action::Send {
                        to: msg.signer(),
                        message: reply,
                    });
                }
            }
            Message::CallForBids(_) => {
                if let Some(p) = self.provider.as_mut() {
                    p.handle_message(now, &msg);
                }
            }
            Message::Bid(_) | Message::Decline(_) => {
                if let Some(o) = self.orchestrator.as_mut() {
                    let ctx = OrchestratorContext {
                        now,
                        adverts: &self.adverts,
                        reputation: &ctx_rep,
                    };
                    o.handle_message(&ctx, &msg);
                }
            }
            Message::Award(_) => {
                if let Some(p) = self.provider.as_mut() {
                    p.handle_message(now, &msg);
                }
                self.client.handle_message(now, &msg);
            }
            Message::Status(_) | Message::Result(_) => {
                if let Message::Status(s) = msg.message()
                    && s.refusal == Some(Refusal::NotElected)
                {
                    // The job's ranking was drawn when it was submitted; a
                    // job that waited through a change of seats must move
                    // on to orchestrators providers now take calls from.
                    let ranking = self.election.ranking(now, &s.job_id);
                    self.client.rerank(&s.job_id, ranking);
                }
                self.client.handle_message(now, &msg);
                if let Some(o) = self.orchestrator.as_mut() {
                    let ctx = OrchestratorContext {
                        now,
                        adverts: &self.adverts,
                        reputation: &ctx_rep,
                    };
                    o.handle_message(&ctx, &msg);
                }
            }
            Message::Cancel(_) => {
                if let Some(o) = self.orchestrator.as_mut() {
                    let ctx = OrchestratorContext {
                        now,
                        adverts: &self.adverts,
                        reputation: &ctx_rep,
                    };
                    o.handle_message(&ctx, &msg);
                }
                if let Some(p) = self.provider.as_mut() {
                    p.handle_message(now, &msg);
                }
            }
            Message::Log(_) | Message::Chunk(_) => self.client.handle_message(now, &msg),
            Message::Fetch(_) => {
                if let Some(p) = self.provider.as_mut() {
                    p.handle_message(now, &msg);
                }
            }
            // The driver answers a sync and unpacks a bundle: it keeps the
            // advert envelopes as they travelled, which this machine does
            // not, and hands each advert of a bundle to `handle_bytes`.
            Message::AdvertSync(_) | Message::AdvertBundle(_) => {}
            Message::Receipt(r) => {
                // Every receipt that passed `authorise` goes to the ledger,
                // whoever relayed it.
                self.actions.push_back(Action::StoreReceipt(r.clone()));
                self.client.handle_message(now, &msg);
                if let Some(o) = self.orchestrator.as_mut() {
                    let ctx = OrchestratorContext {
                        now,
                        adverts: &self.adverts,
                        reputation: &ctx_rep,
                    };
                    o.handle_message(&ctx, &msg);
                }
            }
        }
        self.reputation = ctx_rep;
    }

    /// The standing checks of [`authority`](crate::authority) that need this
    /// peer's view: who it sees elected, and what it has already taken.
    /// Messages from ourselves pass (our own roles made them).
    fn authorise(&mut self, now: Timestamp, msg: &Signed) -> Result<(), Refused> {
        // Draw this epoch's seats, so `had_seat` can judge awards later by
        // the election as it stood, not as it is redrawn then.
        self.election.elected(now);
        if msg.signer() == self.me {
            return Ok(());
        }
        let direct_until = msg
            .timestamp()
            .plus(MAX_DIRECT_MESSAGE_AGE_MS + MAX_CLOCK_SKEW_MS);
        match msg.message() {
            Message::Job(spec) => {
                if spec.start_by > msg.timestamp().plus(MAX_START_WINDOW_MS) {
                    return Err(Refused::FarStartBy);
                }
                // A job is kept until its start-by time; a copy of one this
                // peer's orchestrator has forgotten must not run it again.
                let known = self
                    .orchestrator
                    .as_ref()
                    .is_some_and(|o| o.job_state(&msg.id()).is_some());
                let until = spec.start_by.plus(MAX_CLOCK_SKEW_MS);
                if !self.replays.insert(now, msg.id(), until) && !known {
                    return Err(Refused::Replayed);
                }
            }
            Message::CallForBids(call) => {
                if self.config.check_seats && !self.election.had_seat(now, &msg.signer()) {
                    return Err(Refused::UnelectedCall);
                }
                if call.bid_deadline > now.plus(MAX_BID_WINDOW_MS) {
                    return Err(Refused::FarDeadline);
                }
                if let Ok(job) = call.job.clone().verify()
                    && let Message::Job(spec) = job.message()
                    && spec.start_by > job.timestamp().plus(MAX_START_WINDOW_MS)
                {
                    return Err(Refused::FarStartBy);
                }
                if !self.replays.insert(now, msg.id(), direct_until) {
                    return Err(Refused::Replayed);
                }
            }
            Message::Award(_) if !self.replays.insert(now, msg.id(), direct_until) => {
                return Err(Refused::Replayed);
            }
            Message::Receipt(r) => {
                let award_at = r.award_time().map_err(|_| Refused::InvalidReceipt)?;
                r.verify().map_err(|_| Refused::InvalidReceipt)?;
                // Our own orchestrator's awards pass: it took the job only
                // while it saw itself elected.
                if self.config.check_seats
                    && r.receipt.orchestrator != self.me
                    && !self.election.had_seat(award_at, &r.receipt.orchestrator)
                {
                    return Err(Refused::UnelectedAward);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// How many job, call and award ids this peer holds against replay,
    /// and how many it had to drop early for want of room.
    pub fn replay_cache(&self) -> (usize, u64) {
        (self.replays.len(), self.replays.evicted())
    }

    /// Elected now or in the previous epoch: jobs submitted just before an
    /// epoch change still find their orchestrator.
    fn recently_elected(&mut self, now: Timestamp) -> bool {
        let me = self.me;
        if self.election.is_elected(now, &me) {
            return true;
        }
        let epoch_ms = self.election.config().epoch_ms;
        now.0 >= epoch_ms && self.election.is_elected(Timestamp(now.0 - epoch_ms), &me)
    }

    /// Signs and submits a job from this peer's user.
    pub fn submit(&mut self, now: Timestamp, spec: JobSpec) -> Result<JobId, SubmitError> {
        let signed = self.client.prepare(now, spec)?;
        let ranking = self.election.ranking(now, &signed.id());
        self.client.submit(now, signed, ranking)
    }

    /// Handle: the user cancels one of their jobs; false if there is no such live job.
    pub fn cancel(&mut self, now: Timestamp, job: &JobId, reason: &str) -> bool {
        self.client.cancel(now, job, reason)
    }

    /// Installs the provider role's admission check (see [`Admission`](crate::Admission)).
    pub fn set_admission(&mut self, admission: Box<dyn crate::provider::Admission>) {
        if let Some(p) = self.provider.as_mut() {
            p.set_admission(admission);
        }
    }

    /// The adapter finished a job this peer runs as provider.
    pub fn execution_finished(&mut self, now: Timestamp, job: JobId, report: ExecutionReport) {
        if let Some(p) = self.provider.as_mut() {
            p.execution_finished(now, job, report);
        }
    }

    /// Output a job this peer runs as provider just produced: streamed to the client.
    pub fn log_output(
        &mut self,
        now: Timestamp,
        job: JobId,
        stream: crate::job::LogStream,
        data: &[u8],
    ) {
        if let Some(p) = self.provider.as_mut() {
            p.log_output(now, job, stream, data);
        }
    }

    /// Asks the provider of our finished job for a chunk of an output file.
    pub fn fetch_output(
        &mut self,
        now: Timestamp,
        job: &JobId,
        digest: &crate::digest::Digest,
        offset: u64,
    ) -> bool {
        self.client.fetch_output(now, job, digest, offset)
    }

    /// The connection to `node` dropped.
    pub fn peer_gone(&mut self, now: Timestamp, node: &NodeId) {
        self.client.handle_peer_gone(now, node);
        if let Some(o) = self.orchestrator.as_mut() {
            let ctx = OrchestratorContext {
                now,
                adverts: &self.adverts,
                reputation: &self.reputation,
            };
            o.handle_peer_gone(&ctx, node);
        }
    }

    /// Timeout: when the peer next wants [`handle_timeout`](Self::handle_timeout)
    /// called (an advert to republish, a bid window to close, a silent
    /// party to give up on). Ask again after every handle call: the answer
    /// moves.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            Some(self.next_advert_at),
            self.client.poll_timeout(),
            self.provider.as_ref().and_then(Provider::poll_timeout),
            self.orchestrator
                .as_ref()
                .and_then(Orchestrator::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timeout: time has reached what [`poll_timeout`](Self::poll_timeout)
    /// said; every role acts on what is due by `now`. A call with nothing
    /// due does nothing. Drain [`poll_action`](Self::poll_action) after it.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now >= self.next_advert_at {
            self.adverts.expire(now);
            self.publish_advert(now);
        }
        self.client.handle_timeout(now);
        if let Some(p) = self.provider.as_mut() {
            p.handle_timeout(now);
        }
        let seated =
            self.orchestrator.is_none() || !self.config.check_seats || self.recently_elected(now);
        if let Some(o) = self.orchestrator.as_mut() {
            let ctx = OrchestratorContext {
                now,
                adverts: &self.adverts,
                reputation: &self.reputation,
            };
            if !seated && o.active_jobs() > 0 {
                o.hand_back_queued(&ctx);
            }
            o.handle_timeout(&ctx);
        }
    }

    /// Poll: the next thing the driver must do, or `None` when there is
    /// nothing left; call it until `None` after every handle call and every
    /// [`handle_timeout`](Self::handle_timeout). Messages a role addresses to this same peer
    /// (a client that is also the orchestrator) are delivered here and never
    /// reach the driver; a capacity change schedules a fresh advert.
    #[must_use]
    pub fn poll_action(&mut self, now: Timestamp) -> Option<Action> {
        loop {
            if let Some(a) = self.actions.pop_front() {
                return Some(a);
            }
            let next = self
                .client
                .poll_action()
                .or_else(|| self.provider.as_mut().and_then(Provider::poll_action))
                .or_else(|| {
                    self.orchestrator
                        .as_mut()
                        .and_then(Orchestrator::poll_action)
                })?;
            match next {
                Action::Send { to, message } if to == self.me => {
                    self.handle_signed(now, message);
                }
                Action::Notify(Event::CapacityChanged) => {
                    self.advertise_soon(now);
                    return Some(Action::Notify(Event::CapacityChanged));
                }
                other => return Some(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published_sequence(peer: &mut Peer, now: Timestamp) -> Option<u64> {
        std::iter::from_fn(|| peer.poll_action(now)).find_map(|a| match a {
            Action::Publish { message, .. } => match message.message() {
                Message::Advert(ad) => Some(ad.sequence),
                _ => None,
            },
            _ => None,
        })
    }

    #[test]
    fn a_peer_that_rejoins_advertises_again_once_the_mesh_can_carry_it() {
        let t0 = Timestamp::from_millis(1_700_000_000_000);
        let mut peer = Peer::new(Keypair::from_seed(1), PeerConfig::default());
        peer.rejoined(t0);
        assert_eq!(
            peer.poll_timeout(),
            Some(Timestamp::ZERO),
            "not started: nothing to repeat"
        );
        peer.start(t0);
        let first = published_sequence(&mut peer, t0).expect("the first advert");
        assert_eq!(peer.poll_timeout(), Some(t0.plus(MINUTE)));

        let joined = t0.plus(50);
        peer.rejoined(joined);
        let again = joined.plus(REJOIN_ADVERT_DELAY_MS);
        assert_eq!(peer.poll_timeout(), Some(again));
        peer.handle_timeout(again);
        let second = published_sequence(&mut peer, again).expect("advertised again");
        assert!(second > first);
        assert_eq!(
            peer.poll_timeout(),
            Some(again.plus(MINUTE)),
            "then the usual rhythm"
        );
    }
}
