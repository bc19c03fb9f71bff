//! devnet's child processes: the bootstrap peer and the nodes, each with
//! its own data directory and log, stopped together however devnet ends.

use crate::cli::api_client::Endpoint;
use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// Puts `model` into the node's `models/` directory: a hard link when the
/// file system allows (no copy of a large file), else a symbolic link.
pub(super) fn give_model(model: &Path, node_dir: &Path) -> Result<()> {
    let model = model
        .canonicalize()
        .with_context(|| format!("--model {}: no such file", model.display()))?;
    if model
        .extension()
        .is_none_or(|x| !x.eq_ignore_ascii_case("gguf"))
    {
        bail!("--model {}: expected a .gguf file", model.display());
    }
    let dir = node_dir.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = model.file_name().context("--model names no file")?;
    let dest = dir.join(name);
    let _ = std::fs::remove_file(&dest);
    std::fs::hard_link(&model, &dest)
        .or_else(|_| std::os::unix::fs::symlink(&model, &dest))
        .with_context(|| format!("cannot link {} into {}", model.display(), dir.display()))?;
    Ok(())
}

/// A child process of devnet, killed if devnet lets go of it.
#[derive(Debug)]
pub(super) struct Proc {
    pub(super) label: String,
    pub(super) dir: PathBuf,
    pub(super) child: Child,
}

impl Proc {
    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Every child, stopped with SIGTERM (then SIGKILL) when devnet ends, and
/// killed outright if devnet unwinds on an error.
#[derive(Debug, Default)]
pub(super) struct Children(pub(super) Vec<Proc>);

impl Children {
    pub(super) async fn stop(&mut self) {
        for p in &self.0 {
            if let Some(pid) = p.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for p in &mut self.0 {
            if tokio::time::timeout_at(deadline, p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
        self.0.clear();
    }

    /// The first child that has exited, if any.
    pub(super) fn exited(&mut self) -> Option<(String, String)> {
        for p in &mut self.0 {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Some((format!("{} exited with {status}", p.label), p.log_tail()));
            }
        }
        None
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.start_kill();
        }
    }
}

/// Starts `modchain start` for one node, joining through `bootstrap`.
fn spawn_node_process(exe: &Path, label: &str, dir: &Path, bootstrap: &str) -> Result<Proc> {
    let _ = std::fs::remove_file(dir.join("api.url"));
    let log = std::fs::File::create(dir.join("node.log"))
        .with_context(|| format!("cannot create {}", dir.join("node.log").display()))?;
    let mut cmd = Command::new(exe);
    // Each devnet node reads its own config.toml, never a --config file the
    // caller's environment names (the packaged service sets MODCHAIN_CONFIG).
    cmd.env_remove("MODCHAIN_CONFIG");
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            bootstrap,
            "--orchestrator",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(Proc {
        label: label.to_string(),
        dir: dir.to_path_buf(),
        child,
    })
}

/// A new directory under the system's temporary one, named by pid and time.
pub(super) fn fresh_dir() -> PathBuf {
    let ms = modchain_protocol::Timestamp::now_wall().as_millis();
    std::env::temp_dir().join(format!("modchain-devnet-{}-{ms}", std::process::id()))
}

/// Waits until the node serves its API; returns its stats.
pub(super) async fn wait_api(proc_: &mut Proc, within: Duration) -> Result<Value> {
    let data_dir = DataDir::resolve(Some(proc_.dir.clone()));
    let deadline = Instant::now() + within;
    loop {
        if let Ok(ep) = Endpoint::locate(&data_dir)
            && let Ok(stats) = ep.call("GET", "/api/v1/stats", None).await
        {
            return Ok(stats);
        }
        if let Ok(Some(status)) = proc_.child.try_wait() {
            bail!(
                "{} exited with {status} before its API came up; last log lines:\n{}",
                proc_.label,
                proc_.log_tail()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not serve its API within {within:?}; last log lines:\n{}",
                proc_.label,
                proc_.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the bootstrap peer (this executable's `bootstrap-peer`) in
/// `dir/bootstrap`; returns its address, which it prints as its first line.
pub(super) async fn start_bootstrap(
    exe: &Path,
    dir: &Path,
    children: &mut Children,
) -> Result<String> {
    let bs_dir = dir.join("bootstrap");
    std::fs::create_dir_all(&bs_dir)
        .with_context(|| format!("cannot create {}", bs_dir.display()))?;
    let bs_log = std::fs::File::create(bs_dir.join("node.log"))
        .with_context(|| format!("cannot create {}", bs_dir.join("node.log").display()))?;
    let mut bs = Command::new(exe)
        .arg("--data-dir")
        .arg(&bs_dir)
        .args(["bootstrap-peer", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(bs_log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = bs
        .stdout
        .take()
        .context("no stdout from the bootstrap peer")?;
    children.0.push(Proc {
        label: "bootstrap".into(),
        dir: bs_dir.clone(),
        child: bs,
    });
    let mut first = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    tokio::time::timeout(Duration::from_secs(20), reader.read_line(&mut first))
        .await
        .context("the bootstrap peer did not print its address within 20 s")??;
    let bootstrap = first.trim().to_string();
    if !bootstrap.contains("/p2p/") {
        bail!(
            "the bootstrap peer did not start (said {bootstrap:?}); see {}",
            bs_dir.join("node.log").display()
        );
    }
    Ok(bootstrap)
}

/// `modchain init` in `ndir`, then `modchain start` joining `bootstrap`;
/// `model` (a GGUF file) goes into its `models/` first.
pub(super) async fn start_node(
    exe: &Path,
    label: &str,
    ndir: &Path,
    bootstrap: &str,
    model: Option<&Path>,
) -> Result<Proc> {
    let out = Command::new(exe)
        .env_remove("MODCHAIN_CONFIG")
        .arg("--data-dir")
        .arg(ndir)
        .arg("init")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run `modchain init`")?;
    if !out.status.success() {
        bail!(
            "`modchain init` for {label} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if let Some(model) = model {
        give_model(model, ndir)?;
    }
    allow_devnet_images(ndir)?;
    spawn_node_process(exe, label, ndir, bootstrap)
}

/// The images a devnet node's docker adapter may run (an empty allowlist
/// allows none): busybox, as the guides' examples use it, and the test
/// suite's locally built image.
const DEVNET_IMAGES: &str = r#"allowed_images = ["busybox:*", "modchain-test/*"]"#;

/// Writes [`DEVNET_IMAGES`] into the `config.toml` `modchain init` wrote.
fn allow_devnet_images(ndir: &Path) -> Result<()> {
    let path = ndir.join("config.toml");
    let config = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let changed = config.replacen("allowed_images = []", DEVNET_IMAGES, 1);
    std::fs::write(&path, changed).with_context(|| format!("cannot write {}", path.display()))
}
