//! The receipt ledger: every valid receipt this node has seen, in a sled
//! database under the data directory.
//!
//! A receipt is verified before it is written, written once (deduplicated by
//! receipt id), and flushed to disk before `append` returns, so a receipt the
//! node acknowledged survives a crash. Reputation and credit balances are
//! derived from the stored receipts with the protocol crate's own functions.

use modchain_protocol::{
    Balances, Credits, NodeId, ReceiptError, ReceiptId, SignedReceipt, Trust, TrustConfig,
    TrustGraph, decode, encode,
};
use std::path::{Path, PathBuf};
use thiserror::Error;

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
    pub fn append(&self, receipt: &SignedReceipt) -> Result<Appended, LedgerError> {
        // Every valid receipt reaches a node several times (gossip, direct):
        // a receipt already held is answered without checking signatures again.
        if self.receipts.contains_key(receipt.id().as_bytes())? {
            return Ok(Appended::Duplicate);
        }
        let id = receipt.verify()?;
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
    pub fn trust(&self, pretrusted: &[NodeId], config: &TrustConfig) -> Trust {
        let mut graph = TrustGraph::new();
        for r in self.receipts().0 {
            graph.add(&r.receipt);
        }
        graph.compute(pretrusted, config)
    }

    /// Credit balances from every stored receipt.
    pub fn balances(&self, grant: Credits) -> Balances {
        let mut b = Balances::new(grant);
        for r in self.receipts().0 {
            b.add(&r.receipt);
        }
        b
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
