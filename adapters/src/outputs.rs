//! Collecting the files a job wrote to its output directory, and holding a
//! job to its output quota while it writes.

use modchain_protocol::{Digest, OutputFile, limits};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Lists regular files under `dir` (recursively, symlinks never followed, so
/// a job cannot point an output at a file of the host), with their BLAKE3
/// digests. Contents travel inline while all inline outputs together fit the
/// protocol's inline limit; larger ones are fetched later by digest. Files
/// are hashed from disk in pieces: only what travels inline is ever held in
/// memory, whatever the job wrote.
pub fn collect(dir: &Path) -> io::Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inline_total = 0usize;
    let mut out = Vec::new();
    for (name, path) in files.into_iter().take(limits::MAX_OUTPUT_FILES) {
        let size = fs::symlink_metadata(&path)?.len();
        let fits = usize::try_from(size)
            .ok()
            .is_some_and(|n| inline_total + n <= limits::MAX_INLINE_OUTPUT_BYTES);
        let (digest, inline, size) = if fits {
            let data = fs::read(&path)?;
            inline_total += data.len();
            (Digest::of(&data), Some(data.clone()), data.len() as u64)
        } else {
            let (digest, size) = digest_file(&path)?;
            (digest, None, size)
        };
        out.push(OutputFile {
            name,
            size,
            digest,
            inline,
        });
    }
    Ok(out)
}

/// BLAKE3 and length of a file, read in pieces.
fn digest_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    Ok((Digest(*h.finalize().as_bytes()), len))
}

/// Bytes the regular files under `dir` take (symlinks not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// How often [`watch_quota`] looks at the output directory.
pub const QUOTA_POLL: Duration = Duration::from_millis(100);

/// Holds a running job to its output quota, whatever adapter runs it: looks
/// at `dir` every [`QUOTA_POLL`] and once more when `done` is cancelled
/// (the job ended), and the moment the files there pass `quota` bytes,
/// cancels `stop` (the adapter then stops the job) and returns `true`. A
/// running job can overshoot by what it writes in one poll interval, never
/// more, and a job that ends first is still caught by the last look: its
/// outputs are then never collected or served.
pub async fn watch_quota(
    dir: std::path::PathBuf,
    quota: u64,
    stop: CancellationToken,
    done: CancellationToken,
) -> bool {
    let mut tick = tokio::time::interval(QUOTA_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ended = tokio::select! {
            _ = done.cancelled() => true,
            _ = tick.tick() => false,
        };
        let d = dir.clone();
        let used = tokio::task::spawn_blocking(move || dir_size(&d))
            .await
            .unwrap_or(0);
        if used > quota {
            stop.cancel();
            return true;
        }
        if ended {
            return false;
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            out.push((rel, path));
        }
        if out.len() > limits::MAX_OUTPUT_FILES {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_files_with_digests_and_skips_symlinks() {
        let dir = std::env::temp_dir().join(format!("modchain-outputs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::write(dir.join("a.txt"), b"alpha").expect("write");
        fs::write(dir.join("sub/b.txt"), b"beta").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).expect("symlink");
        let out = collect(&dir).expect("collect");
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, vec!["a.txt", "sub/b.txt"]);
        assert_eq!(out[0].digest, Digest::of(b"alpha"));
        assert_eq!(out[1].inline.as_deref(), Some(&b"beta"[..]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_too_large_to_travel_inline_is_hashed_from_disk() {
        let dir = std::env::temp_dir().join(format!("modchain-outputs-big-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let big = vec![7u8; limits::MAX_INLINE_OUTPUT_BYTES + 1];
        fs::write(dir.join("big"), &big).expect("write");
        let out = collect(&dir).expect("collect");
        assert_eq!(out[0].digest, Digest::of(&big));
        assert_eq!(out[0].size, big.len() as u64);
        assert!(out[0].inline.is_none());
        assert_eq!(dir_size(&dir), big.len() as u64);
        let _ = fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_job_past_its_output_quota_is_stopped_while_it_writes() {
        let dir = std::env::temp_dir().join(format!("modchain-quota-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let (stop, done) = (CancellationToken::new(), CancellationToken::new());
        let watcher = tokio::spawn(watch_quota(dir.clone(), 1000, stop.clone(), done.clone()));
        fs::write(dir.join("small"), [0u8; 500]).expect("write");
        tokio::time::sleep(QUOTA_POLL * 3).await;
        assert!(!stop.is_cancelled(), "within quota");
        fs::write(dir.join("more"), [0u8; 600]).expect("write");
        tokio::time::timeout(Duration::from_secs(5), stop.cancelled())
            .await
            .expect("stopped once past the quota");
        assert!(watcher.await.expect("watcher"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_job_that_ends_before_the_next_look_is_still_held_to_its_quota() {
        let dir = std::env::temp_dir().join(format!("modchain-quota-end-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let (stop, done) = (CancellationToken::new(), CancellationToken::new());
        let watcher = tokio::spawn(watch_quota(dir.clone(), 1000, stop.clone(), done.clone()));
        // Written and ended between two looks.
        tokio::time::sleep(QUOTA_POLL / 2).await;
        fs::write(dir.join("burst"), [0u8; 5000]).expect("write");
        done.cancel();
        assert!(watcher.await.expect("watcher"), "the last look sees it");

        // Within the quota at the end: not over.
        fs::remove_file(dir.join("burst")).expect("rm");
        let (stop, done) = (CancellationToken::new(), CancellationToken::new());
        let watcher = tokio::spawn(watch_quota(dir.clone(), 1000, stop.clone(), done.clone()));
        fs::write(dir.join("small"), [0u8; 10]).expect("write");
        done.cancel();
        assert!(!watcher.await.expect("watcher"));
        assert!(!stop.is_cancelled());
        let _ = fs::remove_dir_all(&dir);
    }
}
