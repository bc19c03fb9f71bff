//! Where a client's job results land: `<data-dir>/results/<job-id>/<name>`.
//!
//! Inline outputs are written as they came in the signed result; larger ones
//! are fetched from the provider chunk by chunk into `<name>.part` (a few
//! requests in flight at once, re-asked when the provider goes quiet), and
//! only renamed to `<name>` once the whole file's BLAKE3 matches the digest
//! the provider signed. A file that does not match is deleted. Names come from
//! the provider, so only plain relative paths are accepted: no `..`, no root,
//! no `.`.

use modchain_protocol::{Digest, JobId, OutputChunk, OutputFile};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("output name `{0}` is not a plain relative path (no `..`, no leading `/`)")]
    BadName(String),
    #[error("inline output `{0}` does not match its signed digest")]
    DigestMismatch(String),
    #[error(
        "output `{name}` declares {size} bytes, more than the {limit} bytes the job allows; not fetched"
    )]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Chunk requests in flight per file.
pub const FETCH_WINDOW: usize = 4;
/// Times a quiet fetch is asked again before it is abandoned.
pub const FETCH_RETRIES: u32 = 5;

/// What a fetched chunk led to.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Stored; ask for the chunks at these offsets (possibly none yet).
    Next(Vec<u64>),
    /// The file is whole and matches its digest.
    Complete { name: String, path: PathBuf },
    /// The whole file did not match its digest: deleted.
    Mismatch { name: String },
    /// Not a chunk we asked for (unknown file, wrong offset): ignored.
    Ignored,
    /// Could not be stored; the fetch is abandoned.
    Failed { name: String, error: String },
}

#[derive(Debug)]
struct Fetch {
    name: String,
    path: PathBuf,
    part: PathBuf,
    size: u64,
    /// The next offset not yet asked for.
    next: u64,
    /// Offsets asked for and not answered.
    outstanding: BTreeSet<u64>,
    /// Ranges received, start → end.
    done: BTreeMap<u64, u64>,
    last_progress: Instant,
    retries: u32,
    /// The digest of the bytes before `hashed_to`, fed as the received
    /// prefix grows: the file is hashed a chunk at a time as it arrives,
    /// never read whole on the event loop at the end.
    hasher: blake3::Hasher,
    hashed_to: u64,
}

impl Fetch {
    /// Notes a request for the chunk at `offset`.
    fn ask(&mut self, offset: u64) -> u64 {
        self.outstanding.insert(offset);
        offset
    }

    /// Offsets to ask for now, keeping the window full.
    fn refill(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        while self.outstanding.len() < FETCH_WINDOW && self.next < self.size {
            let at = self.next;
            self.next = at.saturating_add(CHUNK).min(self.size);
            out.push(self.ask(at));
        }
        out
    }

    /// Feeds the hasher the received bytes that now follow its prefix:
    /// `chunk` itself when it is next (the usual case, with no read), else
    /// what earlier out-of-order chunks left on disk, at most a window's worth.
    fn hash_prefix(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        loop {
            let Some((_, &end)) = self.done.range(..=self.hashed_to).next_back() else {
                return Ok(());
            };
            if end <= self.hashed_to {
                return Ok(());
            }
            let from = self.hashed_to;
            if offset <= from && offset.saturating_add(data.len() as u64) >= end {
                let skip = usize::try_from(from - offset).unwrap_or(usize::MAX);
                let take = usize::try_from(end - offset).unwrap_or(usize::MAX);
                if let Some(piece) = data.get(skip..take) {
                    self.hasher.update(piece);
                    self.hashed_to = end;
                    continue;
                }
            }
            let mut file = std::fs::File::open(&self.part)?;
            file.seek(SeekFrom::Start(from))?;
            let mut left = end - from;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                file.read_exact(&mut buf[..want])?;
                self.hasher.update(&buf[..want]);
                left -= want as u64;
            }
            self.hashed_to = end;
        }
    }

    fn complete(&self) -> bool {
        let mut covered = 0u64;
        for (&start, &end) in &self.done {
            if start > covered {
                return false;
            }
            covered = covered.max(end);
        }
        covered >= self.size
    }
}

/// The chunk size the client asks for (the protocol's maximum).
const CHUNK: u64 = modchain_protocol::limits::MAX_OUTPUT_CHUNK_BYTES as u64;

/// The client side of results: the files stored per job, and the fetches in flight.
#[derive(Debug)]
pub struct ResultStore {
    root: PathBuf,
    stored: HashMap<JobId, BTreeMap<String, PathBuf>>,
    fetches: HashMap<(JobId, Digest), Fetch>,
    /// Bytes each job's results take (declared sizes of files stored or
    /// being fetched), and when the first arrived: what pruning reads.
    usage: HashMap<JobId, (Instant, u64)>,
    /// Directories under `root` an earlier run left, with their age and size.
    earlier: Vec<(PathBuf, Instant, u64)>,
}

/// What a job's outputs may take on the client, in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Total bytes kept under `results/`; the oldest jobs' go first.
    pub max_bytes: u64,
    /// A job's outputs are deleted this long after they arrived.
    pub max_age: Duration,
}

/// The relative path for an output name, if it is a plain relative path.
pub fn safe_name(name: &str) -> Result<PathBuf, OutputError> {
    let bad = || OutputError::BadName(name.to_string());
    if name.is_empty() || name.contains('\0') || name.contains('\\') {
        return Err(bad());
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The job directories an earlier run left under `root`, oldest first, each
/// with its age (from its modification time) and size.
fn earlier_results(root: &Path) -> Vec<(PathBuf, Instant, u64)> {
    fn size(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => size(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let now = Instant::now();
    let mut out: Vec<(PathBuf, Instant, u64)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let age = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            let at = now.checked_sub(age).unwrap_or(now);
            (e.path(), at, size(&e.path()))
        })
        .collect();
    out.sort_by_key(|e| e.1);
    out
}

/// BLAKE3 of a file, read in pieces.
fn digest_file(path: &Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest(*h.finalize().as_bytes()))
}

impl ResultStore {
    pub fn new(root: PathBuf) -> Self {
        let earlier = earlier_results(&root);
        ResultStore {
            root,
            stored: HashMap::new(),
            fetches: HashMap::new(),
            usage: HashMap::new(),
            earlier,
        }
    }

    /// Bytes the results under `results/` take (as declared by the signed
    /// results, plus what earlier runs left).
    pub fn stored_bytes(&self) -> u64 {
        self.usage.values().map(|u| u.1).sum::<u64>()
            + self.earlier.iter().map(|e| e.2).sum::<u64>()
    }

    fn account(&mut self, job: JobId, bytes: u64) {
        let e = self.usage.entry(job).or_insert((Instant::now(), 0));
        e.1 = e.1.saturating_add(bytes);
    }

    /// Deletes results past `retention` at `now`: every job's older than
    /// its age, then the oldest jobs' until the total fits. Jobs with a
    /// fetch in flight are left alone. Returns how many jobs' went.
    pub fn prune(&mut self, retention: Retention, now: Instant) -> usize {
        let old = |at: Instant| now.saturating_duration_since(at) > retention.max_age;
        let mut pruned = 0;
        let before = self.earlier.len();
        self.earlier.retain(|(dir, at, _)| {
            let keep = !old(*at);
            if !keep {
                let _ = std::fs::remove_dir_all(dir);
            }
            keep
        });
        pruned += before - self.earlier.len();
        let busy: BTreeSet<JobId> = self.fetches.keys().map(|(j, _)| *j).collect();
        let mut jobs: Vec<(JobId, Instant)> = self
            .usage
            .iter()
            .filter(|(j, _)| !busy.contains(j))
            .map(|(j, u)| (*j, u.0))
            .collect();
        jobs.sort_by_key(|(_, at)| *at);
        for (job, at) in jobs {
            if !old(at) && self.stored_bytes() <= retention.max_bytes {
                break;
            }
            self.forget_job(&job);
            pruned += 1;
        }
        while self.stored_bytes() > retention.max_bytes && !self.earlier.is_empty() {
            let (dir, _, _) = self.earlier.remove(0);
            let _ = std::fs::remove_dir_all(dir);
            pruned += 1;
        }
        pruned
    }

    fn forget_job(&mut self, job: &JobId) {
        self.usage.remove(job);
        self.stored.remove(job);
        let _ = std::fs::remove_dir_all(self.job_dir(job));
    }

    pub fn job_dir(&self, job: &JobId) -> PathBuf {
        self.root.join(job.to_hex())
    }

    /// Files of a job stored so far, by name.
    pub fn stored(&self, job: &JobId) -> Option<&BTreeMap<String, PathBuf>> {
        self.stored.get(job)
    }

    /// Fetches of a job still in flight.
    pub fn pending(&self, job: &JobId) -> usize {
        self.fetches.keys().filter(|(j, _)| j == job).count()
    }

    fn target(&self, job: &JobId, name: &str) -> Result<PathBuf, OutputError> {
        let rel = safe_name(name)?;
        let path = self.job_dir(job).join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        Ok(path)
    }

    fn remember(&mut self, job: JobId, name: &str, path: PathBuf) {
        self.stored
            .entry(job)
            .or_default()
            .insert(name.to_string(), path);
    }

    /// Writes an output that travelled inline, after checking its digest.
    pub fn store_inline(
        &mut self,
        job: JobId,
        file: &OutputFile,
        data: &[u8],
    ) -> Result<PathBuf, OutputError> {
        if Digest::of(data) != file.digest {
            return Err(OutputError::DigestMismatch(file.name.clone()));
        }
        let path = self.target(&job, &file.name)?;
        std::fs::write(&path, data).map_err(io_err(&path))?;
        self.remember(job, &file.name, path.clone());
        self.account(job, data.len() as u64);
        Ok(path)
    }

    /// Starts fetching a file that did not travel inline. Returns the
    /// offsets to ask for first; none when there is nothing to fetch (an
    /// empty file, stored at once).
    /// `limit` is what the job allows its outputs in all (`room`: what is
    /// left of it): a file declared larger is refused, never fetched, so a
    /// provider cannot fill the client's disk by declaring a size.
    pub fn begin_fetch(
        &mut self,
        job: JobId,
        file: &OutputFile,
        room: u64,
    ) -> Result<Vec<u64>, OutputError> {
        if file.size > room {
            return Err(OutputError::TooLarge {
                name: file.name.clone(),
                size: file.size,
                limit: room,
            });
        }
        if file.size == 0 {
            self.store_inline(job, file, &[])?;
            return Ok(Vec::new());
        }
        let path = self.target(&job, &file.name)?;
        let mut part = path.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        std::fs::File::create(&part).map_err(io_err(&part))?;
        let mut fetch = Fetch {
            name: file.name.clone(),
            path,
            part,
            size: file.size,
            next: 0,
            outstanding: BTreeSet::new(),
            done: BTreeMap::new(),
            last_progress: Instant::now(),
            retries: 0,
            hasher: blake3::Hasher::new(),
            hashed_to: 0,
        };
        let first = fetch.refill();
        self.fetches.insert((job, file.digest), fetch);
        self.account(job, file.size);
        Ok(first)
    }

    /// Fetches that heard nothing for `quiet`: the offsets to ask again,
    /// and the fetches given up after [`FETCH_RETRIES`] (their parts deleted).
    #[allow(clippy::type_complexity)]
    pub fn stalled(
        &mut self,
        quiet: Duration,
    ) -> (Vec<(JobId, Digest, Vec<u64>)>, Vec<(JobId, String)>) {
        let now = Instant::now();
        let mut again = Vec::new();
        let mut abandoned = Vec::new();
        for ((job, digest), f) in self.fetches.iter_mut() {
            if now.duration_since(f.last_progress) < quiet {
                continue;
            }
            f.retries += 1;
            f.last_progress = now;
            if f.retries > FETCH_RETRIES {
                abandoned.push((*job, *digest));
                continue;
            }
            again.push((*job, *digest, f.outstanding.iter().copied().collect()));
        }
        let gone = abandoned
            .into_iter()
            .filter_map(|key| {
                self.fetches.remove(&key).map(|f| {
                    let _ = std::fs::remove_file(&f.part);
                    (key.0, f.name)
                })
            })
            .collect();
        (again, gone)
    }

    /// Stores a chunk the provider sent, at its offset.
    pub fn on_chunk(&mut self, chunk: &OutputChunk) -> ChunkOutcome {
        let key = (chunk.job_id, chunk.digest);
        let Some(f) = self.fetches.get_mut(&key) else {
            return ChunkOutcome::Ignored;
        };
        if !f.outstanding.contains(&chunk.offset) || chunk.total_size != f.size {
            return ChunkOutcome::Ignored;
        }
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if chunk.data.is_empty() || end > f.size {
            let name = f.name.clone();
            let part = f.part.clone();
            self.fetches.remove(&key);
            let _ = std::fs::remove_file(&part);
            return ChunkOutcome::Failed {
                name,
                error: "the provider sent an empty or oversized chunk".into(),
            };
        }
        // Written, then fed to the digest as the received prefix grows.
        let mut store = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().write(true).open(&f.part)?;
            file.seek(SeekFrom::Start(chunk.offset))?;
            file.write_all(&chunk.data)?;
            f.outstanding.remove(&chunk.offset);
            f.done.insert(chunk.offset, end);
            f.hash_prefix(chunk.offset, &chunk.data)
        };
        if let Err(e) = store() {
            let (name, part) = (f.name.clone(), f.part.clone());
            self.fetches.remove(&key);
            let _ = std::fs::remove_file(&part);
            return ChunkOutcome::Failed {
                name,
                error: e.to_string(),
            };
        }
        f.last_progress = Instant::now();
        f.retries = 0;
        let mut asks = Vec::new();
        let wanted = (chunk.offset.saturating_add(CHUNK)).min(f.size);
        if end < wanted && !f.outstanding.contains(&end) {
            // A short chunk: ask for the rest of its range.
            asks.push(f.ask(end));
        }
        if !f.complete() || !f.outstanding.is_empty() {
            asks.extend(f.refill());
            if !f.complete() {
                return ChunkOutcome::Next(asks);
            }
        }
        let Some(f) = self.fetches.remove(&key) else {
            return ChunkOutcome::Ignored;
        };
        let hashed = if f.hashed_to == f.size {
            Ok(Digest(*f.hasher.finalize().as_bytes()))
        } else {
            // Cannot happen once every byte arrived; checked, not assumed.
            digest_file(&f.part)
        };
        match hashed {
            Ok(d) if d == chunk.digest => match std::fs::rename(&f.part, &f.path) {
                Ok(()) => {
                    self.remember(chunk.job_id, &f.name, f.path.clone());
                    ChunkOutcome::Complete {
                        name: f.name,
                        path: f.path,
                    }
                }
                Err(e) => ChunkOutcome::Failed {
                    name: f.name,
                    error: e.to_string(),
                },
            },
            Ok(_) => {
                let _ = std::fs::remove_file(&f.part);
                ChunkOutcome::Mismatch { name: f.name }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&f.part);
                ChunkOutcome::Failed {
                    name: f.name,
                    error: e.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("modchain-outputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn file(name: &str, data: &[u8]) -> OutputFile {
        OutputFile {
            name: name.into(),
            size: data.len() as u64,
            digest: Digest::of(data),
            inline: None,
        }
    }

    fn chunk(job: JobId, data: &[u8], whole: &[u8], offset: u64) -> OutputChunk {
        OutputChunk {
            job_id: job,
            digest: Digest::of(whole),
            offset,
            total_size: whole.len() as u64,
            data: data.to_vec(),
        }
    }

    #[test]
    fn names_must_be_plain_relative_paths() {
        assert!(safe_name("a.txt").is_ok());
        assert_eq!(
            safe_name("sub/b.txt").expect("ok"),
            PathBuf::from("sub/b.txt")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn chunks_assemble_into_a_file_that_matches_its_digest() {
        let root = temp("assemble");
        let mut store = ResultStore::new(root.clone());
        let job = Digest::of(b"job");
        let whole: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let f = file("big/data.bin", &whole);
        let mut asked = store.begin_fetch(job, &f, u64::MAX).expect("begin");
        assert_eq!(asked, vec![0]);
        assert_eq!(store.pending(&job), 1);
        // A chunk nobody asked for is ignored.
        assert_eq!(
            store.on_chunk(&chunk(job, &whole[10..20], &whole, 10)),
            ChunkOutcome::Ignored
        );
        // The provider answers with short chunks; the rest is asked again.
        loop {
            let offset = asked.remove(0);
            let end = (offset as usize + 30_000).min(whole.len());
            match store.on_chunk(&chunk(job, &whole[offset as usize..end], &whole, offset)) {
                ChunkOutcome::Next(more) => asked.extend(more),
                ChunkOutcome::Complete { name, path } => {
                    assert_eq!(name, "big/data.bin");
                    assert_eq!(std::fs::read(&path).expect("read"), whole);
                    assert_eq!(path, root.join(job.to_hex()).join("big/data.bin"));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(asked.is_empty());
        assert_eq!(store.pending(&job), 0);
        assert!(
            store
                .stored(&job)
                .is_some_and(|s| s.contains_key("big/data.bin"))
        );
    }

    #[test]
    fn a_file_that_does_not_match_its_digest_is_deleted() {
        let root = temp("mismatch");
        let mut store = ResultStore::new(root.clone());
        let job = Digest::of(b"job2");
        let whole = b"the real contents".to_vec();
        let f = file("out.txt", &whole);
        store.begin_fetch(job, &f, u64::MAX).expect("begin");
        let forged = b"the fake contents".to_vec();
        let mut c = chunk(job, &forged, &whole, 0);
        c.digest = f.digest;
        assert_eq!(
            store.on_chunk(&c),
            ChunkOutcome::Mismatch {
                name: "out.txt".into()
            }
        );
        let dir = root.join(job.to_hex());
        assert!(!dir.join("out.txt").exists());
        assert!(!dir.join("out.txt.part").exists());
        assert!(store.stored(&job).is_none());
    }

    #[test]
    fn inline_outputs_are_checked_and_bad_names_refused() {
        let root = temp("inline");
        let mut store = ResultStore::new(root);
        let job = Digest::of(b"job3");
        let f = file("hello.txt", b"hello");
        let path = store.store_inline(job, &f, b"hello").expect("stored");
        assert_eq!(std::fs::read(path).expect("read"), b"hello");
        assert!(matches!(
            store.store_inline(job, &f, b"other"),
            Err(OutputError::DigestMismatch(_))
        ));
        let evil = file("../escape.txt", b"x");
        assert!(matches!(
            store.store_inline(job, &evil, b"x"),
            Err(OutputError::BadName(_))
        ));
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn full_chunks_arrive_out_of_order_within_the_window() {
        let root =
            std::env::temp_dir().join(format!("modchain-outputs-window-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut store = ResultStore::new(root);
        let job = Digest::of(b"window");
        let whole: Vec<u8> = (0..(CHUNK * 5 + 123)).map(|i| (i % 253) as u8).collect();
        let f = OutputFile {
            name: "w.bin".into(),
            size: whole.len() as u64,
            digest: Digest::of(&whole),
            inline: None,
        };
        let mut asked = store.begin_fetch(job, &f, u64::MAX).expect("begin");
        assert_eq!(asked.len(), FETCH_WINDOW);
        let mut done = None;
        while let Some(offset) = asked.pop() {
            let end = (offset + CHUNK).min(whole.len() as u64) as usize;
            let c = OutputChunk {
                job_id: job,
                digest: f.digest,
                offset,
                total_size: f.size,
                data: whole[offset as usize..end].to_vec(),
            };
            match store.on_chunk(&c) {
                ChunkOutcome::Next(more) => asked.extend(more),
                ChunkOutcome::Complete { path, .. } => done = Some(path),
                other => panic!("unexpected {other:?}"),
            }
        }
        let path = done.expect("completed");
        assert_eq!(std::fs::read(path).expect("read"), whole);
        // Nothing left to re-ask.
        let (again, gone) = store.stalled(Duration::ZERO);
        assert!(again.is_empty() && gone.is_empty());
    }

    #[test]
    fn a_quiet_fetch_is_asked_again_then_abandoned() {
        let root =
            std::env::temp_dir().join(format!("modchain-outputs-stall-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut store = ResultStore::new(root.clone());
        let job = Digest::of(b"stall");
        let f = OutputFile {
            name: "s.bin".into(),
            size: 10,
            digest: Digest::of(b"0123456789"),
            inline: None,
        };
        assert_eq!(
            store.begin_fetch(job, &f, u64::MAX).expect("begin"),
            vec![0]
        );
        for _ in 0..FETCH_RETRIES {
            let (again, gone) = store.stalled(Duration::ZERO);
            assert_eq!(again, vec![(job, f.digest, vec![0])]);
            assert!(gone.is_empty());
        }
        let (again, gone) = store.stalled(Duration::ZERO);
        assert!(again.is_empty());
        assert_eq!(gone, vec![(job, "s.bin".to_string())]);
        assert_eq!(store.pending(&job), 0);
        assert!(!root.join(job.to_hex()).join("s.bin.part").exists());
    }

    #[test]
    fn an_output_larger_than_the_job_allows_is_never_fetched_and_old_results_are_pruned() {
        let root = std::env::temp_dir().join(format!("modchain-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut store = ResultStore::new(root.clone());
        let job = Digest::of(b"big job");
        let huge = OutputFile {
            name: "huge.bin".into(),
            size: 10 << 30,
            digest: Digest::of(b"whatever"),
            inline: None,
        };
        let err = store
            .begin_fetch(job, &huge, 1 << 20)
            .expect_err("too large");
        assert!(matches!(err, OutputError::TooLarge { .. }), "{err}");
        assert!(!root.join(job.to_hex()).join("huge.bin.part").exists());

        // Two jobs' inline outputs of 3 bytes each; a cap of 4 bytes keeps
        // only the newer one, an age of zero keeps none.
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let file = |name: &str| OutputFile {
            name: name.into(),
            size: 3,
            digest: Digest::of(b"abc"),
            inline: Some(b"abc".to_vec()),
        };
        store.store_inline(a, &file("x"), b"abc").expect("a");
        std::thread::sleep(Duration::from_millis(5));
        store.store_inline(b, &file("y"), b"abc").expect("b");
        assert_eq!(store.stored_bytes(), 6);
        let keep = Retention {
            max_bytes: 4,
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(store.prune(keep, Instant::now()), 1);
        assert!(!root.join(a.to_hex()).exists(), "the older job went");
        assert!(root.join(b.to_hex()).join("y").exists());
        let none = Retention {
            max_bytes: u64::MAX,
            max_age: Duration::ZERO,
        };
        assert_eq!(
            store.prune(none, Instant::now() + Duration::from_secs(1)),
            1
        );
        assert_eq!(store.stored_bytes(), 0);
        let _ = std::fs::remove_dir_all(&root);
    }
}
