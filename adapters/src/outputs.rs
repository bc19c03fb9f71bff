//! Collecting the files a job wrote to its output directory.

use modchain_protocol::{Digest, OutputFile, limits};
use std::fs;
use std::io;
use std::path::Path;

/// Lists regular files under `dir` (recursively, symlinks never followed, so
/// a job cannot point an output at a file of the host), with their BLAKE3
/// digests. Contents travel inline while all inline outputs together fit the
/// protocol's inline limit; larger ones are fetched later by digest.
pub fn collect(dir: &Path) -> io::Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inline_total = 0usize;
    let mut out = Vec::new();
    for (name, path) in files.into_iter().take(limits::MAX_OUTPUT_FILES) {
        let data = fs::read(&path)?;
        let inline = if inline_total + data.len() <= limits::MAX_INLINE_OUTPUT_BYTES {
            inline_total += data.len();
            Some(data.clone())
        } else {
            None
        };
        out.push(OutputFile {
            name,
            size: data.len() as u64,
            digest: Digest::of(&data),
            inline,
        });
    }
    Ok(out)
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
}
