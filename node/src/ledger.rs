//! The receipt ledger: every valid receipt this node has seen, in a sled
//! database under the data directory.
//!
//! A receipt is verified before it is written, written once (deduplicated by
//! receipt id), and flushed to disk before `append` returns, so a receipt the
//! node acknowledged survives a crash. Reputation and credit balances are
//! derived from the stored receipts with the protocol crate's own functions.
//!
//! Verifying and writing cost a signature check and an fsync each, so the
//! node never does either on its event loop: a [`LedgerWorker`] on the
//! blocking pool takes receipts from a bounded queue, verifies each once,
//! applies the per-signer quota ([`SignerQuota`]), writes it, and sends the
//! outcome back; the node keeps its [`Totals`] (balances, the trust graph)
//! up to date from those outcomes, one receipt at a time.

use modchain_protocol::{
    Balances, Credits, NodeId, ReceiptError, ReceiptId, SignedReceipt, Trust, TrustConfig,
    TrustGraph, decode, encode,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// The largest stored receipt we decode (receipts are far smaller).
const MAX_STORED_RECEIPT_BYTES: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(
        "cannot open the ledger at {path}: {source}; if another modchain process uses this data directory, stop it first"
    )]
    Open { path: PathBuf, source: sled::Error },
    #[error("the ledger's storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("receipt rejected: {0}")]
    Invalid(#[from] ReceiptError),
    #[error("receipt dropped: {signer} signed {quota} receipts within the last hour already")]
    OverQuota { signer: String, quota: u32 },
}

/// How many receipts one signer may have stored per window: a pair of
/// throwaway keys can fill a ledger only this fast. Counted after a receipt
/// verifies (a forgery naming someone never uses up their quota), for each
/// party that signed it. The table of signers is itself capped: when it is
/// full, signers whose window ended are forgotten; if none has, a receipt
/// from a new signer waits for the next window.
#[derive(Debug)]
pub struct SignerQuota {
    per_window: u32,
    window: Duration,
    max_signers: usize,
    counts: HashMap<NodeId, (Instant, u32)>,
}

impl SignerQuota {
    pub fn new(per_window: u32, window: Duration, max_signers: usize) -> Self {
        SignerQuota {
            per_window,
            window,
            max_signers: max_signers.max(1),
            counts: HashMap::new(),
        }
    }

    /// Signers tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Counts one receipt signed by each of `signers` at `now`, unless one
    /// of them is over quota (then nothing is counted): the signer refused.
    pub fn admit(&mut self, signers: &[NodeId], now: Instant) -> Result<(), NodeId> {
        let window = self.window;
        let current = |at: &Instant| now.saturating_duration_since(*at) < window;
        for s in signers {
            match self.counts.get(s) {
                Some((at, n)) if current(at) && *n >= self.per_window => return Err(*s),
                Some(_) => {}
                None => {
                    if self.counts.len() >= self.max_signers {
                        self.counts.retain(|_, (at, _)| current(at));
                    }
                    if self.counts.len() >= self.max_signers {
                        return Err(*s);
                    }
                }
            }
        }
        for s in signers {
            let e = self.counts.entry(*s).or_insert((now, 0));
            if !current(&e.0) {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }
}

/// What `append` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored and flushed.
    New,
    /// Already held; nothing written.
    Duplicate,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    db: sled::Db,
    /// receipt id → encoded SignedReceipt
    receipts: sled::Tree,
    /// (issued_at BE, receipt id) → () : time order for listings
    by_time: sled::Tree,
}

impl Ledger {
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = sled::open(path).map_err(|source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let receipts = db.open_tree("receipts")?;
        let by_time = db.open_tree("receipts_by_time")?;
        Ok(Ledger {
            db,
            receipts,
            by_time,
        })
    }

    /// Verifies and stores a receipt; flushed before returning `New`.
    #[cfg(test)]
    pub fn append(&self, receipt: &SignedReceipt) -> Result<Appended, LedgerError> {
        self.append_within(receipt, None, Instant::now())
    }

    /// As [`append`](Self::append), counting the receipt against `quota`
    /// once it verified.
    pub fn append_within(
        &self,
        receipt: &SignedReceipt,
        quota: Option<&mut SignerQuota>,
        now: Instant,
    ) -> Result<Appended, LedgerError> {
        // Every valid receipt reaches a node several times (gossip, direct):
        // a receipt already held is answered without checking signatures again.
        if self.receipts.contains_key(receipt.id().as_bytes())? {
            return Ok(Appended::Duplicate);
        }
        let id = receipt.verify()?;
        if let Some(quota) = quota {
            let r = &receipt.receipt;
            let mut signers = Vec::with_capacity(3);
            if receipt.client_signature.is_some() {
                signers.push(r.client);
            }
            if receipt.provider_signature.is_some() {
                signers.push(r.provider);
            }
            if receipt.orchestrator_signature.is_some() {
                signers.push(r.orchestrator);
            }
            signers.dedup();
            if let Err(signer) = quota.admit(&signers, now) {
                return Err(LedgerError::OverQuota {
                    signer: signer.short(),
                    quota: quota.per_window,
                });
            }
        }
        let value = encode(receipt);
        let inserted =
            self.receipts
                .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(value))?;
        if inserted.is_err() {
            return Ok(Appended::Duplicate);
        }
        self.by_time
            .insert(time_key(receipt.receipt.issued_at.0, &id), &[])?;
        self.db.flush()?;
        Ok(Appended::New)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn contains(&self, id: &ReceiptId) -> Result<bool, LedgerError> {
        Ok(self.receipts.contains_key(id.as_bytes())?)
    }

    #[allow(dead_code)]
    pub fn get(&self, id: &ReceiptId) -> Result<Option<SignedReceipt>, LedgerError> {
        Ok(self
            .receipts
            .get(id.as_bytes())?
            .and_then(|v| decode(&v, MAX_STORED_RECEIPT_BYTES).ok()))
    }

    pub fn len(&self) -> usize {
        self.receipts.len()
    }

    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Every stored receipt, oldest first. Entries that fail to decode or
    /// verify (a damaged file) are skipped and counted, never trusted.
    pub fn receipts(&self) -> (Vec<SignedReceipt>, usize) {
        let mut out = Vec::new();
        let mut damaged = 0;
        for entry in self.by_time.iter() {
            let Ok((key, _)) = entry else {
                damaged += 1;
                continue;
            };
            let Some(id) = key.get(8..) else {
                damaged += 1;
                continue;
            };
            match self.receipts.get(id) {
                Ok(Some(v)) => match decode::<SignedReceipt>(&v, MAX_STORED_RECEIPT_BYTES) {
                    Ok(r) if r.verify().is_ok() => out.push(r),
                    _ => damaged += 1,
                },
                _ => damaged += 1,
            }
        }
        (out, damaged)
    }

    /// Global trust from every stored receipt.
    #[allow(dead_code)]
    pub fn trust(&self, pretrusted: &[NodeId], config: &TrustConfig) -> Trust {
        self.totals(Credits::ZERO).graph.compute(pretrusted, config)
    }

    /// Credit balances from every stored receipt.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn balances(&self, grant: Credits) -> Balances {
        self.totals(grant).balances
    }

    /// Balances and the trust graph from every stored receipt: read once,
    /// when the node starts, and kept up to date from then on.
    pub fn totals(&self, grant: Credits) -> Totals {
        let mut totals = Totals::new(grant);
        for r in self.receipts().0 {
            totals.add(&r);
        }
        totals
    }
}

/// What the node derives from its ledger, kept up to date one receipt at a
/// time instead of re-read (and re-verified) whole.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub balances: Balances,
    pub graph: TrustGraph,
}

impl Totals {
    pub fn new(grant: Credits) -> Self {
        Totals {
            balances: Balances::new(grant),
            graph: TrustGraph::new(),
        }
    }

    /// A receipt newly stored.
    pub fn add(&mut self, r: &SignedReceipt) {
        self.balances.add(&r.receipt);
        self.graph.add(&r.receipt);
    }
}

/// A receipt the ledger worker dealt with, for the event loop.
#[derive(Debug)]
pub struct Stored {
    pub receipt: SignedReceipt,
    pub result: Result<Appended, LedgerError>,
}

/// The ledger's writer on the blocking pool: receipts in through a bounded
/// queue ([`LedgerWorker::submit`] never waits: a full queue drops the
/// receipt and says so), outcomes out to the event loop.
#[derive(Debug)]
pub struct LedgerWorker {
    queue: mpsc::Sender<SignedReceipt>,
}

impl LedgerWorker {
    /// Starts the worker on the blocking pool; its outcomes come out of the
    /// receiver returned. `queue` receipts may wait at once.
    pub fn start(
        ledger: Ledger,
        mut quota: SignerQuota,
        queue: usize,
    ) -> (Self, mpsc::Receiver<Stored>) {
        let (tx, mut rx) = mpsc::channel::<SignedReceipt>(queue.max(1));
        let (out, stored) = mpsc::channel(queue.max(1));
        tokio::task::spawn_blocking(move || {
            while let Some(receipt) = rx.blocking_recv() {
                let result = ledger.append_within(&receipt, Some(&mut quota), Instant::now());
                if out.blocking_send(Stored { receipt, result }).is_err() {
                    break;
                }
            }
        });
        (LedgerWorker { queue: tx }, stored)
    }

    /// Queues `receipt`; `false` when the queue is full (it is dropped).
    pub fn submit(&self, receipt: SignedReceipt) -> bool {
        self.queue.try_send(receipt).is_ok()
    }
}

fn time_key(issued_at_ms: u64, id: &ReceiptId) -> Vec<u8> {
    let mut k = issued_at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::testnet::{ReceiptParties, settled_receipt};
    use modchain_protocol::{Digest, ExitStatus, Keypair, Outcome, Timestamp};

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("modchain-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn receipt(n: u64) -> SignedReceipt {
        let (c, p, o) = (
            Keypair::from_seed(1),
            Keypair::from_seed(2),
            Keypair::from_seed(3),
        );
        let parties = ReceiptParties {
            client: &c,
            provider: &p,
            orchestrator: &o,
        };
        settled_receipt(
            &parties,
            Digest::of(&n.to_le_bytes()),
            Credits(100 + n),
            Outcome::Executed(ExitStatus::Exited(0)),
            Timestamp(1_700_000_000_000 + n),
        )
    }

    #[test]
    fn stores_once_and_derives_balances() {
        let dir = temp("dedupe");
        let ledger = Ledger::open(&dir).expect("open");
        assert_eq!(ledger.append(&receipt(1)).expect("append"), Appended::New);
        assert_eq!(
            ledger.append(&receipt(1)).expect("append"),
            Appended::Duplicate
        );
        assert_eq!(ledger.append(&receipt(2)).expect("append"), Appended::New);
        assert_eq!(ledger.len(), 2);
        let b = ledger.balances(Credits(1_000));
        assert_eq!(
            b.balance(&Keypair::from_seed(1).node_id()),
            1_000 - 101 - 102
        );
        assert_eq!(
            b.balance(&Keypair::from_seed(2).node_id()),
            1_000 + 101 + 102
        );
        drop(ledger);
        let again = Ledger::open(&dir).expect("reopen");
        assert_eq!(again.receipts().0.len(), 2);
    }

    #[test]
    fn a_signer_over_its_quota_is_refused_and_forgeries_do_not_use_it_up() {
        let dir = temp("quota");
        let ledger = Ledger::open(&dir).expect("open");
        let mut quota = SignerQuota::new(2, Duration::from_secs(3600), 16);
        let t = Instant::now();
        let mut forged = receipt(10);
        forged.receipt.price = Credits(1);
        assert!(matches!(
            ledger.append_within(&forged, Some(&mut quota), t),
            Err(LedgerError::Invalid(_))
        ));
        for n in 11..13 {
            assert_eq!(
                ledger
                    .append_within(&receipt(n), Some(&mut quota), t)
                    .expect("within quota"),
                Appended::New
            );
        }
        let over = ledger.append_within(&receipt(13), Some(&mut quota), t);
        assert!(
            matches!(over, Err(LedgerError::OverQuota { .. })),
            "{over:?}"
        );
        assert_eq!(ledger.len(), 2);
        // A duplicate costs nothing; a new window admits again.
        assert_eq!(
            ledger
                .append_within(&receipt(11), Some(&mut quota), t)
                .expect("dup"),
            Appended::Duplicate
        );
        let later = t + Duration::from_secs(3601);
        assert_eq!(
            ledger
                .append_within(&receipt(13), Some(&mut quota), later)
                .expect("next hour"),
            Appended::New
        );
    }

    #[test]
    fn the_quota_table_is_capped_and_forgets_ended_windows() {
        let mut q = SignerQuota::new(5, Duration::from_secs(10), 2);
        let ids: Vec<NodeId> = (0..3).map(|s| Keypair::from_seed(s).node_id()).collect();
        let t = Instant::now();
        assert!(q.admit(&ids[..2], t).is_ok());
        assert_eq!(q.admit(&ids[2..], t), Err(ids[2]), "full");
        assert!(q.admit(&ids[2..], t + Duration::from_secs(11)).is_ok());
        assert_eq!(q.len(), 1, "the ended windows were forgotten");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_stores_off_the_loop_and_reports_back() {
        let dir = temp("worker");
        let ledger = Ledger::open(&dir).expect("open");
        let quota = SignerQuota::new(100, Duration::from_secs(3600), 16);
        let (worker, mut stored) = LedgerWorker::start(ledger.clone(), quota, 8);
        assert!(worker.submit(receipt(20)));
        assert!(worker.submit(receipt(20)));
        let first = stored.recv().await.expect("outcome");
        assert!(matches!(first.result, Ok(Appended::New)));
        let second = stored.recv().await.expect("outcome");
        assert!(matches!(second.result, Ok(Appended::Duplicate)));
        let mut totals = Totals::new(Credits(1_000));
        totals.add(&first.receipt);
        assert_eq!(
            totals.balances.balance(&Keypair::from_seed(2).node_id()),
            ledger
                .balances(Credits(1_000))
                .balance(&Keypair::from_seed(2).node_id())
        );
    }

    #[test]
    fn forged_or_half_signed_receipts_are_refused_and_nothing_is_stored() {
        let dir = temp("forged");
        let ledger = Ledger::open(&dir).expect("open");
        let mut half = receipt(3);
        half.provider_signature = None;
        assert!(matches!(ledger.append(&half), Err(LedgerError::Invalid(_))));
        let mut forged = receipt(4);
        forged.receipt.price = Credits(1);
        assert!(matches!(
            ledger.append(&forged),
            Err(LedgerError::Invalid(_))
        ));
        assert_eq!(ledger.len(), 0);
    }

    /// Set in the copy of the test binary that the crash test starts as its
    /// writer: the directory of the ledger to write.
    const CRASH_DIR: &str = "MODCHAIN_LEDGER_CRASH_DIR";

    /// The writer half of the crash test (not a test of its own): appends
    /// receipts until killed, printing each id once `append` returned
    /// (acknowledged).
    fn append_until_killed(dir: &Path) -> ! {
        use std::io::Write;
        let ledger = Ledger::open(dir).expect("open");
        let mut out = std::io::stdout();
        let mut n = 0;
        loop {
            let r = receipt(n);
            ledger.append(&r).expect("append");
            let _ = writeln!(out, "ACK {}", r.id());
            let _ = out.flush();
            n += 1;
        }
    }

    #[test]
    fn acknowledged_receipts_survive_kill_9_mid_write() {
        // In the copy started below, this test is the writer.
        if let Some(dir) = std::env::var_os(CRASH_DIR) {
            append_until_killed(Path::new(&dir));
        }
        let dir = temp("crash");
        let exe = std::env::current_exe().expect("test binary");
        let mut child = std::process::Command::new(exe)
            .args([
                "--exact",
                "ledger::tests::acknowledged_receipts_survive_kill_9_mid_write",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn writer");
        // The writer's lines, read on a thread so the wait below has a ceiling.
        let stdout = child.stdout.take().expect("writer's stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let acked_id = |l: String| l.strip_prefix("ACK ").map(str::to_string);
        // Kill it only once it is well into writing, in the middle of some
        // append: 20 receipts acknowledged, however slow the machine.
        let mut acked: Vec<String> = Vec::new();
        while acked.len() < 20 {
            match lines.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => acked.extend(acked_id(line)),
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "the writer acknowledged only {} receipts ({e})",
                        acked.len()
                    );
                }
            }
        }
        // SIGKILL: no destructors, no final flush.
        child.kill().expect("kill -9");
        let _ = child.wait();
        // What it acknowledged up to the kill is still in the pipe.
        acked.extend(lines.iter().filter_map(acked_id));
        let _ = reader.join();
        let ledger = Ledger::open(&dir).expect("reopen after kill -9");
        let (stored, damaged) = ledger.receipts();
        assert_eq!(damaged, 0, "damaged entries after kill -9");
        for id in &acked {
            let id = Digest::from_hex(id).expect("hex id");
            assert!(
                ledger.contains(&id).expect("lookup"),
                "acknowledged receipt {id} lost"
            );
        }
        assert!(stored.len() >= acked.len());
    }
}
