//! Jobs around the protocol's machines: a provider's executions and the
//! outputs it serves, a client's live output, results and fetched files,
//! receipts into the ledger, and the JSON event stream.

use super::state::*;
use crate::control::LogFeed;
use crate::executor::{ExecutorEvent, Finished};
use crate::ledger::{Appended, LedgerError, Stored};
use crate::outputs::ChunkOutcome;
use crate::views::{ReceiptView, exit_text};
use modchain_net::behaviour::timings::REPUTATION_DEBOUNCE;
use modchain_protocol::{
    Digest, Envelope, Event, FetchOutput, JobId, Message, NodeId, OUTPUT_RETENTION_MS, Outcome,
    OutputChunk, SignedReceipt, Timestamp, limits,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(super) fn hex_list(nodes: &[NodeId]) -> Vec<String> {
    nodes.iter().map(NodeId::to_hex).collect()
}

/// The job an event is about, if any.
pub(super) fn event_job(event: &Event) -> Option<JobId> {
    match event {
        Event::JobAccepted { job_id, .. }
        | Event::JobRejected { job_id, .. }
        | Event::JobWaiting { job_id, .. }
        | Event::AuctionOpened { job_id, .. }
        | Event::BidReceived { job_id, .. }
        | Event::DeclineReceived { job_id, .. }
        | Event::Awarded { job_id, .. }
        | Event::ProviderFailed { job_id, .. }
        | Event::JobEnded { job_id, .. }
        | Event::BidSent { job_id, .. }
        | Event::BidWithheld { job_id, .. }
        | Event::ExecutionStarted { job_id, .. }
        | Event::ExecutionFinished { job_id, .. }
        | Event::StateChanged { job_id, .. }
        | Event::ResultReceived { job_id, .. }
        | Event::ResultRejected { job_id, .. }
        | Event::Resubmitted { job_id, .. }
        | Event::LogReceived { job_id, .. }
        | Event::ReceiptStored { job_id, .. } => Some(*job_id),
        Event::ChunkReceived(c) => Some(c.job_id),
        _ => None,
    }
}

/// An event's name and fields for the JSON event stream.
fn event_fields(event: &Event) -> (&'static str, Value) {
    match event {
        Event::JobAccepted { job_id, client } => (
            "job_accepted",
            json!({ "job_id": job_id.to_hex(), "client": client.to_hex() }),
        ),
        Event::JobRejected { job_id, reason } => (
            "job_rejected",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::JobWaiting { job_id, reason } => (
            "job_waiting",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::AuctionOpened {
            job_id,
            attempt,
            providers,
        } => (
            "auction_opened",
            json!({ "job_id": job_id.to_hex(), "attempt": attempt, "providers": hex_list(providers) }),
        ),
        Event::BidReceived {
            job_id,
            provider,
            max_total,
        } => (
            "bid_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "max_total": max_total.0 }),
        ),
        Event::DeclineReceived {
            job_id,
            provider,
            reason,
        } => (
            "decline_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "reason": reason.to_string() }),
        ),
        Event::Awarded {
            job_id,
            attempt,
            provider,
            max_total,
            bids,
            auction_ms,
        } => (
            "awarded",
            json!({
                "job_id": job_id.to_hex(), "attempt": attempt, "provider": provider.to_hex(),
                "max_total": max_total.0, "bids": bids, "auction_ms": auction_ms,
            }),
        ),
        Event::ProviderFailed {
            job_id,
            provider,
            reason,
        } => (
            "provider_failed",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "reason": reason.as_str() }),
        ),
        Event::JobEnded {
            job_id,
            state,
            detail,
        } => (
            "job_ended",
            json!({ "job_id": job_id.to_hex(), "state": state.as_str(), "detail": detail }),
        ),
        Event::BidSent {
            job_id,
            orchestrator,
            max_total,
        } => (
            "bid_sent",
            json!({ "job_id": job_id.to_hex(), "orchestrator": orchestrator.to_hex(), "max_total": max_total.0 }),
        ),
        Event::BidWithheld { job_id, reason } => (
            "bid_withheld",
            json!({ "job_id": job_id.to_hex(), "reason": reason.to_string() }),
        ),
        Event::ExecutionStarted { job_id, client } => (
            "execution_started",
            json!({ "job_id": job_id.to_hex(), "client": client.to_hex() }),
        ),
        Event::ExecutionFinished {
            job_id,
            exit,
            wall_ms,
        } => (
            "execution_finished",
            json!({ "job_id": job_id.to_hex(), "exit_code": exit.code(), "exit": exit_text(exit), "wall_ms": wall_ms }),
        ),
        Event::CapacityChanged => ("capacity_changed", json!({})),
        Event::StateChanged {
            job_id,
            state,
            detail,
        } => (
            "state_changed",
            json!({ "job_id": job_id.to_hex(), "state": state.as_str(), "detail": detail }),
        ),
        Event::ResultReceived {
            job_id,
            provider,
            exit,
        } => (
            "result_received",
            json!({ "job_id": job_id.to_hex(), "provider": provider.to_hex(), "exit_code": exit.code(), "exit": exit_text(exit) }),
        ),
        Event::ResultRejected { job_id, reason } => (
            "result_rejected",
            json!({ "job_id": job_id.to_hex(), "reason": reason }),
        ),
        Event::Resubmitted {
            job_id,
            orchestrator,
        } => (
            "resubmitted",
            json!({ "job_id": job_id.to_hex(), "orchestrator": orchestrator.to_hex() }),
        ),
        Event::LogReceived {
            job_id,
            seq,
            stream,
            data,
        } => (
            "log_received",
            json!({
                "job_id": job_id.to_hex(), "seq": seq,
                "stream": match stream { modchain_protocol::LogStream::Stdout => "stdout", modchain_protocol::LogStream::Stderr => "stderr" },
                "text": String::from_utf8_lossy(data),
            }),
        ),
        Event::ChunkReceived(c) => (
            "chunk_received",
            json!({ "job_id": c.job_id.to_hex(), "digest": c.digest.to_hex(), "offset": c.offset, "bytes": c.data.len(), "total_size": c.total_size }),
        ),
        Event::ReceiptStored { receipt_id, job_id } => (
            "receipt_stored",
            json!({ "receipt_id": receipt_id.to_hex(), "job_id": job_id.to_hex() }),
        ),
        // A kind of event this build does not know yet: named, not dropped,
        // so an observer sees something happened.
        other => ("event", json!({ "debug": format!("{other:?}") })),
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Executed(_) => "executed",
        Outcome::ProviderFailed(_) => "provider_failed",
    }
}

/// A receipt as the API and the event stream show it.
pub fn receipt_json(r: &SignedReceipt) -> Value {
    serde_json::to_value(ReceiptView::from(r)).unwrap_or(Value::Null)
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Node {
    /// One line on the event stream.
    pub(super) fn emit(&self, name: &str, fields: Value) {
        if self.jobs.events.receiver_count() == 0 {
            return;
        }
        let mut line = json!({
            "at_ms": now().as_millis(),
            "node": self.me.short(),
            "event": name,
        });
        if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let _ = self.jobs.events.send(line.to_string());
    }

    /// A receipt to store: verified and written by the ledger worker, off
    /// the event loop; [`on_stored`](Self::on_stored) takes the outcome.
    pub(super) fn store_receipt(&mut self, r: &SignedReceipt) {
        self.jobs.receipts_seen += 1;
        if !self.jobs.ledger_worker.submit(r.clone()) {
            self.jobs.receipts_backlogged += 1;
            tracing::debug!(receipt = %r.id().to_hex(), "ledger queue full; receipt dropped");
        }
    }

    /// What the ledger worker did with a receipt.
    pub(super) fn on_stored(&mut self, stored: Stored) {
        let r = &stored.receipt;
        match stored.result {
            Ok(Appended::New) => {
                self.jobs.receipts_new += 1;
                self.jobs.totals.add(r);
                let rec = &r.receipt;
                tracing::info!(
                    receipt = %r.id().to_hex(),
                    job = %rec.job_id.to_hex(),
                    outcome = outcome_name(&rec.outcome),
                    price = rec.price.0,
                    "receipt stored"
                );
                let mut fields = receipt_json(r);
                if let Value::Object(o) = &mut fields {
                    o.insert("new".into(), Value::Bool(true));
                }
                self.emit("receipt_stored", fields);
                if self.jobs.reputation_due.is_none() {
                    self.jobs.reputation_due = Some(Instant::now() + REPUTATION_DEBOUNCE);
                }
            }
            Ok(Appended::Duplicate) => {}
            Err(e @ LedgerError::OverQuota { .. }) => {
                self.jobs.receipts_over_quota += 1;
                tracing::debug!(receipt = %r.id().to_hex(), error = %e, "receipt not stored");
            }
            Err(e) => {
                self.jobs.receipts_failed += 1;
                tracing::warn!(receipt = %r.id().to_hex(), error = %e, "receipt not stored");
            }
        }
    }

    /// Removes a finished job's work directory and log buffer.
    pub(super) fn forget_work(&mut self, job: &JobId) {
        self.jobs.executor.drop_log(job);
        if let Some(dir) = self.jobs.executor.output_dir(job).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    pub(super) fn on_executor_event(&mut self, ev: ExecutorEvent) {
        let t = now();
        match ev {
            ExecutorEvent::Output {
                job_id,
                stream,
                data,
            } => self.net.peer_mut().log_output(t, job_id, stream, &data),
            ExecutorEvent::Finished(Finished {
                job_id,
                report,
                over_quota,
                log_dropped_bytes,
            }) => {
                if over_quota {
                    self.limits_seen.drop("output_over_quota", 1);
                }
                if log_dropped_bytes > 0 {
                    // Jobs whose live output was cut short (past the log
                    // quota, or while the node could not keep up).
                    self.limits_seen.drop("live_output_cut", 1);
                    tracing::info!(job = %job_id.to_hex(), bytes = log_dropped_bytes, "live output not streamed in full");
                }
                let dir = self.jobs.executor.output_dir(&job_id);
                let files: HashMap<Digest, PathBuf> = report
                    .outputs
                    .iter()
                    .filter(|o| o.inline.is_none())
                    .filter_map(|o| {
                        crate::outputs::safe_name(&o.name)
                            .ok()
                            .map(|rel| (o.digest, dir.join(rel)))
                    })
                    .collect();
                self.jobs.executor.forget(&job_id);
                if files.is_empty() {
                    self.forget_work(&job_id);
                } else {
                    let until = Instant::now() + Duration::from_millis(OUTPUT_RETENTION_MS);
                    self.jobs.served.insert(job_id, (until, files));
                }
                self.net.peer_mut().execution_finished(t, job_id, report);
            }
        }
    }

    /// Provider: answers a client's fetch with a chunk of an output file.
    pub(super) fn serve_output(&mut self, t: Timestamp, to: NodeId, request: FetchOutput) {
        let Some(path) = self
            .jobs
            .served
            .get(&request.job_id)
            .and_then(|(_, files)| files.get(&request.digest))
            .cloned()
        else {
            tracing::debug!(job = %request.job_id, "fetch for an output we no longer hold");
            return;
        };
        let read = || -> std::io::Result<(u64, Vec<u8>)> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&path)?;
            let total = f.metadata()?.len();
            let want = u64::from(request.length)
                .min(limits::MAX_OUTPUT_CHUNK_BYTES as u64)
                .min(total.saturating_sub(request.offset));
            f.seek(SeekFrom::Start(request.offset))?;
            let mut data = vec![0u8; want as usize];
            f.read_exact(&mut data)?;
            Ok((total, data))
        };
        match read() {
            Ok((total_size, data)) => {
                let chunk = OutputChunk {
                    job_id: request.job_id,
                    digest: request.digest,
                    offset: request.offset,
                    total_size,
                    data,
                };
                let msg = Envelope::seal(self.net.peer().key(), t, Message::Chunk(chunk));
                self.net.send(t, to, msg);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read an output to serve")
            }
        }
    }

    pub(super) fn push_job_log(&mut self, job_id: JobId, data: &[u8]) {
        if !self.jobs.job_logs.contains_key(&job_id) {
            // Within the cap: the jobs whose output came first go first.
            self.jobs.job_log_order.push_back(job_id);
            while self.jobs.job_log_order.len() > self.options.limits.max_job_logs.max(1) {
                if let Some(old) = self.jobs.job_log_order.pop_front() {
                    self.jobs.job_logs.remove(&old);
                    self.limits_seen.evict("job_logs", 1);
                }
            }
        }
        let buf = self.jobs.job_logs.entry(job_id).or_default();
        buf.extend_from_slice(data);
        if buf.len() > JOB_LOG_BYTES {
            let cut = buf.len() - JOB_LOG_BYTES;
            buf.drain(..cut);
        }
        let _ = self.jobs.log_feed.send(LogFeed {
            job_id,
            data: Some(data.to_vec()),
        });
    }

    pub(super) fn on_event(&mut self, t: Timestamp, event: Event) {
        self.metrics.on_event(&event);
        let (name, fields) = event_fields(&event);
        match &event {
            Event::LogReceived { .. } | Event::ChunkReceived(_) | Event::CapacityChanged => {
                tracing::debug!(event = name, %fields, "protocol event")
            }
            _ => tracing::info!(event = name, %fields, "protocol event"),
        }
        self.emit(name, fields);
        match event {
            Event::LogReceived { job_id, data, .. } => self.push_job_log(job_id, &data),
            Event::ResultReceived { job_id, .. } => self.take_result(t, job_id),
            Event::ChunkReceived(chunk) => self.take_chunk(t, &chunk),
            Event::StateChanged { job_id, state, .. } if state.is_terminal() => {
                let _ = self.jobs.log_feed.send(LogFeed { job_id, data: None });
            }
            _ => {}
        }
    }

    /// Client: a result arrived. Inline outputs are written at once; the
    /// others are fetched from the provider.
    pub(super) fn take_result(&mut self, t: Timestamp, job_id: JobId) {
        let Some(result) = self.net.peer().job(&job_id).and_then(|j| j.result.clone()) else {
            return;
        };
        if !self.jobs.job_logs.contains_key(&job_id) {
            // No live output came: the result's logs are what there is.
            let mut text = result.stdout.clone();
            text.extend_from_slice(&result.stderr);
            if !text.is_empty() {
                self.push_job_log(job_id, &text);
            }
        }
        // What the job declared it may write, else the node's default
        // quota: a provider cannot make us fetch more than that.
        let limit = self
            .net
            .peer()
            .job(&job_id)
            .map(|j| j.spec.requirements.storage_bytes)
            .filter(|b| *b > 0)
            .unwrap_or(self.options.limits.output_quota_bytes);
        let mut room = limit;
        for file in &result.outputs {
            match &file.inline {
                Some(data) => match self.jobs.results.store_inline(job_id, file, data) {
                    Ok(path) => {
                        tracing::info!(job = %job_id.to_hex(), path = %path.display(), "output stored")
                    }
                    Err(e) => {
                        tracing::warn!(job = %job_id.to_hex(), error = %e, "output not stored")
                    }
                },
                None => match self.jobs.results.begin_fetch(job_id, file, room) {
                    Ok(offsets) => {
                        room = room.saturating_sub(file.size);
                        if !offsets.is_empty() {
                            tracing::info!(job = %job_id.to_hex(), name = %file.name, size = file.size, "fetching an output from the provider");
                        }
                        for offset in offsets {
                            self.net
                                .peer_mut()
                                .fetch_output(t, &job_id, &file.digest, offset);
                        }
                    }
                    Err(e) => {
                        if matches!(e, crate::outputs::OutputError::TooLarge { .. }) {
                            self.limits_seen.drop("output_over_limit", 1);
                            self.emit(
                                "output_rejected",
                                json!({ "job_id": job_id.to_hex(), "name": file.name, "reason": e.to_string() }),
                            );
                        }
                        tracing::warn!(job = %job_id.to_hex(), error = %e, "output not fetched")
                    }
                },
            }
        }
    }

    pub(super) fn take_chunk(&mut self, t: Timestamp, chunk: &OutputChunk) {
        let job = chunk.job_id;
        match self.jobs.results.on_chunk(chunk) {
            ChunkOutcome::Next(offsets) => {
                for offset in offsets {
                    self.net
                        .peer_mut()
                        .fetch_output(t, &job, &chunk.digest, offset);
                }
            }
            ChunkOutcome::Complete { name, path } => {
                tracing::info!(job = %job.to_hex(), path = %path.display(), "output fetched and verified");
                self.emit(
                    "output_stored",
                    json!({ "job_id": job.to_hex(), "name": name, "path": path }),
                );
            }
            ChunkOutcome::Mismatch { name } => {
                tracing::warn!(job = %job.to_hex(), %name, "fetched output does not match its signed digest; deleted");
                self.emit(
                    "output_rejected",
                    json!({ "job_id": job.to_hex(), "name": name, "reason": "digest mismatch" }),
                );
            }
            ChunkOutcome::Failed { name, error } => {
                tracing::warn!(job = %job.to_hex(), %name, %error, "output fetch abandoned");
                self.emit(
                    "output_rejected",
                    json!({ "job_id": job.to_hex(), "name": name, "reason": error }),
                );
            }
            ChunkOutcome::Ignored => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modchain_protocol::{Credits, Keypair};
    use modchain_protocol::{ExitStatus, FailureReason, JobState, Receipt, Usage};

    fn receipt(outcome: Outcome) -> SignedReceipt {
        let (c, p, o) = (
            Keypair::from_seed(1),
            Keypair::from_seed(2),
            Keypair::from_seed(3),
        );
        let r = Receipt {
            job_id: Digest::of(b"job"),
            attempt: 1,
            client: c.node_id(),
            provider: p.node_id(),
            orchestrator: o.node_id(),
            award_id: Digest([0; 32]),
            price: Credits(1234),
            usage: Usage::default(),
            outcome,
            result_digest: None,
            issued_at: Timestamp(1_700_000_000_000),
        };
        SignedReceipt {
            client_signature: Some(r.sign(&c)),
            provider_signature: Some(r.sign(&p)),
            orchestrator_signature: None,
            receipt: r,
            // Shown, not verified: no award needed.
            award: Vec::new(),
        }
    }

    #[test]
    fn receipts_show_parties_as_hex_and_the_outcome_by_name() {
        let r = receipt(Outcome::Executed(ExitStatus::Exited(3)));
        let v = receipt_json(&r);
        assert_eq!(v["receipt_id"], json!(r.id().to_hex()));
        assert_eq!(v["client"], json!(Keypair::from_seed(1).node_id().to_hex()));
        assert_eq!(v["outcome"], json!("executed"));
        assert_eq!(v["exit_code"], json!(3));
        assert_eq!(v["price"], json!(1234));
        assert_eq!(v["issued_at_ms"], json!(1_700_000_000_000u64));
        let f = receipt_json(&receipt(Outcome::ProviderFailed(
            FailureReason::MissedDeadline,
        )));
        assert_eq!(f["outcome"], json!("provider_failed"));
        assert!(f["exit_code"].is_null());
        assert_eq!(f["failure"], json!("missed its deadline"));
    }

    #[test]
    fn events_have_snake_case_names_and_hex_ids() {
        let job = Digest::of(b"j");
        let (name, fields) = event_fields(&Event::StateChanged {
            job_id: job,
            state: JobState::Running,
            detail: "running on x".into(),
        });
        assert_eq!(name, "state_changed");
        assert_eq!(fields["job_id"], json!(job.to_hex()));
        assert_eq!(fields["state"], json!("running"));
        let (name, fields) = event_fields(&Event::ExecutionFinished {
            job_id: job,
            exit: ExitStatus::OutOfMemory,
            wall_ms: 5,
        });
        assert_eq!(name, "execution_finished");
        assert_eq!(fields["exit_code"], json!(137));
        assert_eq!(fields["exit"], json!("killed: over its memory limit"));
    }
}
