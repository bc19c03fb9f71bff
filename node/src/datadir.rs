//! The node's data directory: where its key, configuration, benchmark score
//! and API handles live. `--data-dir` picks it; one directory is one node.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    /// `--config` / MODCHAIN_CONFIG: a configuration file kept elsewhere
    /// (the packaged service reads /etc/modchain/config.toml).
    config: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error(
        "the data directory {path} is not writable ({cause}); fix its permissions or choose another with --data-dir or MODCHAIN_DATA_DIR"
    )]
    NotWritable { path: PathBuf, cause: io::Error },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: io::Error },
}

impl DataDir {
    /// `--data-dir` if given, else `$XDG_DATA_HOME/modchain`, else `~/.local/share/modchain`.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        let root = explicit.unwrap_or_else(default_root);
        DataDir { root, config: None }
    }

    /// Reads the configuration from `config` instead of `<root>/config.toml`
    /// when one is given.
    pub fn with_config(self, config: Option<PathBuf>) -> Self {
        DataDir { config, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| self.root.join("config.toml"))
    }
    pub fn benchmark_path(&self) -> PathBuf {
        self.root.join("benchmark.json")
    }
    pub fn api_url_path(&self) -> PathBuf {
        self.root.join("api.url")
    }
    pub fn api_token_path(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// Creates the directory if needed and proves we can write in it.
    pub fn ensure_writable(&self) -> Result<(), DataDirError> {
        let not_writable = |cause| DataDirError::NotWritable {
            path: self.root.clone(),
            cause,
        };
        fs::create_dir_all(&self.root).map_err(not_writable)?;
        let probe = self.root.join(".write-test");
        fs::write(&probe, b"ok").map_err(not_writable)?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    /// Writes `contents` to `path` atomically (temp file + rename), with
    /// mode 0600 when `private`.
    pub fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        private: bool,
    ) -> Result<(), DataDirError> {
        use std::io::Write;
        let err = |cause| DataDirError::Write {
            path: path.to_path_buf(),
            cause,
        };
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(contents).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)?;
        Ok(())
    }
}

fn default_root() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("modchain");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/modchain"),
        None => PathBuf::from(".modchain"),
    }
}
