//! What an operator sees when something is wrong: each error says what to do.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn modchain(data_dir: &PathBuf) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modchain"));
    c.arg("--data-dir").arg(data_dir);
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modchain-operator-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn start_without_a_key_says_to_run_init() {
    let dir = temp_dir("nokey");
    let out = modchain(&dir).arg("start").output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("modchain init"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_writes_a_private_key_and_a_config_that_loads() {
    let dir = temp_dir("init");
    let out = modchain(&dir).arg("init").output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("peer id: 12D3KooW"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("node.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = std::fs::read_to_string(dir.join("config.toml")).expect("config");
    assert!(config.contains("# Bootstrap peers"), "{config}");
    // Running init again keeps the identity.
    let again = modchain(&dir).arg("init").output().expect("run");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already present"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listen_port_in_use_is_explained() {
    let dir = temp_dir("port");
    assert!(
        modchain(&dir)
            .arg("init")
            .output()
            .expect("init")
            .status
            .success()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = modchain(&dir)
        .args([
            "start",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
            "--api",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is in use"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_bootstrap_peer_is_retried_with_backoff() {
    let dir = temp_dir("backoff");
    assert!(
        modchain(&dir)
            .arg("init")
            .output()
            .expect("init")
            .status
            .success()
    );
    // A port nobody listens on, and a valid peer id.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let log = dir.join("node.log");
    let mut child = modchain(&dir)
        .args([
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            &format!(
                "/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWCp6iwUDdX9ZmV6AfntCb565tejyHB27Bh6vhpPKc3vGv"
            ),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = 0;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        attempts = text.matches("retrying with backoff").count();
        if attempts >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(attempts >= 2, "expected two logged retries:\n{text}");
    assert!(text.contains("attempt=2"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node given two bootstrap peers joins through both and walks the DHT
/// once: a walk per join, not one per bootstrap peer that answers (each
/// walk costs the network a round of lookups).
#[test]
fn two_bootstrap_peers_make_one_dht_walk() {
    let mut net = common::TestNet::start("two-bootstraps", 1);
    let (_second, second_addr) = common::spawn_bootstrap(&net.root.join("bootstrap-2"));
    let i = net.add_node(false, |dir| {
        let path = dir.join("config.toml");
        let config = std::fs::read_to_string(&path).expect("config.toml");
        let changed = config.replacen(
            "bootstrap = []",
            &format!("bootstrap = [\"{second_addr}\"]"),
            1,
        );
        assert_ne!(changed, config, "config.toml has no `bootstrap = []` line");
        std::fs::write(&path, changed).expect("write config.toml");
    });
    let node = &net.nodes[i];
    common::wait_until(
        Duration::from_secs(20),
        "connected to both bootstrap peers",
        || (node.log().matches("connected to bootstrap peer").count() >= 2).then_some(()),
    );
    // The second connection lands within milliseconds of the first; a walk
    // it started would be logged by now.
    std::thread::sleep(Duration::from_millis(500));
    let log = node.log();
    assert_eq!(log.matches("walking the DHT").count(), 1, "{log}");
}
