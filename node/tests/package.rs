//! The Debian package, installed as an operator installs it: into a clean
//! Debian bookworm container (made from Debian's own packages, never pulled
//! from a registry), with no network. The unit must pass `systemd-analyze
//! verify`, and the command line it runs, run as the `modchain` user it
//! names, must bring up a node that `modchain info` and `modchain peers`
//! answer for.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const UNIT: &str = "/usr/lib/systemd/system/modchain.service";

/// What the `[Service]` section of the installed unit says to run, and how.
struct ServiceLine {
    user: String,
    environment: BTreeMap<String, String>,
    exec_start_pre: Vec<String>,
    exec_start: String,
}

/// Reads the few keys this test needs. The unit is ours and plain (no
/// quoting, no `-`/`+` prefixes); anything else fails the test loudly.
fn service_line(unit: &str) -> ServiceLine {
    let mut user = None;
    let mut environment = BTreeMap::new();
    let mut exec_start_pre = Vec::new();
    let mut exec_start = None;
    for line in unit.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "User" => user = Some(value.to_string()),
            "Environment" => {
                let (k, v) = value
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Environment= without a value: {line}"));
                assert!(
                    !v.contains(['"', ' ']),
                    "a quoted Environment= line: {line}"
                );
                environment.insert(k.to_string(), v.to_string());
            }
            "ExecStartPre" => exec_start_pre.push(value.to_string()),
            "ExecStart" => exec_start = Some(value.to_string()),
            _ => {}
        }
    }
    ServiceLine {
        user: user.expect("the unit names its User="),
        environment,
        exec_start_pre,
        exec_start: exec_start.expect("the unit has an ExecStart="),
    }
}

impl ServiceLine {
    /// `command` as the service would run it: as its user, with its
    /// environment (and nothing of root's but PATH).
    fn as_service(&self, command: &str) -> String {
        let env: Vec<String> = self
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "runuser -u {} -- env -i PATH=/usr/bin:/bin {} {command}",
            self.user,
            env.join(" ")
        )
    }
}

#[test]
fn the_deb_installs_on_clean_bookworm_and_its_service_runs_a_node() {
    require_docker();
    sweep_stale_test_resources();
    let root = temp_root("package");
    let deb = debug_deb(&root.join("deb"));
    let base = base_image();
    let container = format!("modchain-package-{}", std::process::id());
    let mut cleanup = Cleanup::default();
    cleanup.on_drop("docker", &["rm", "-f", &container], &[]);
    let deb_dir = format!("{}:/deb:ro", root.join("deb").display());
    run_ok(
        120,
        "docker",
        &[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            "none",
            "-v",
            &deb_dir,
            &base,
            "sleep",
            "infinity",
        ],
        &[],
    );
    let deb_name = deb
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a .deb name");
    assert_eq!(
        deb_name,
        format!("modchain_{}_amd64.deb", workspace_version())
    );
    docker_sh_ok(&container, &format!("dpkg -i /deb/{deb_name}"));

    // The unit: systemd's own checker, with nothing to say about it.
    let verify = docker_sh(&container, &format!("systemd-analyze verify {UNIT} 2>&1"));
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("modchain.service"),
        "systemd-analyze verify warns about the unit: {said}"
    );

    // What the package put in place.
    assert_eq!(
        docker_sh_ok(
            &container,
            "stat -c %U:%a /var/lib/modchain && id -nG modchain"
        ),
        "modchain:700\nmodchain"
    );
    docker_sh_ok(
        &container,
        "test -x /usr/bin/modchain && test -x /usr/bin/modchain-bootstrap \
         && grep -qx /etc/modchain/config.toml /var/lib/dpkg/info/modchain.conffiles \
         && zcat /usr/share/man/man1/modchain.1.gz | grep -q modchain \
         && zcat /usr/share/man/man1/modchain-start.1.gz | grep -q orchestrator \
         && zcat /usr/share/man/man1/modchain-bootstrap.1.gz | grep -qF 'max\\-connections' \
         && grep -q modchain-bootstrap /usr/share/bash-completion/completions/modchain-bootstrap \
         && grep -q submit /usr/share/zsh/vendor-completions/_modchain \
         && grep -q submit /usr/share/fish/vendor_completions.d/modchain.fish",
    );

    // The service's command line, as its user. No systemd runs in the
    // container, so this is the unit's ExecStartPre and ExecStart by hand.
    let unit = docker_sh_ok(&container, &format!("cat {UNIT}"));
    let service = service_line(&unit);
    assert_eq!(service.user, "modchain");
    assert_eq!(
        service
            .environment
            .get("MODCHAIN_CONFIG")
            .map(String::as_str),
        Some("/etc/modchain/config.toml")
    );
    for pre in &service.exec_start_pre {
        docker_sh_ok(&container, &service.as_service(pre));
    }
    docker_sh_ok(
        &container,
        &format!(
            "nohup {} >/tmp/node.log 2>&1 &",
            service.as_service(&service.exec_start)
        ),
    );
    let peers = service.as_service("modchain peers --json");
    let answered = wait_until(Duration::from_secs(60), "the node's API to answer", || {
        let out = docker_sh(&container, &peers);
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).to_string());
        }
        let log = docker_sh(&container, "tail -3 /tmp/node.log");
        eprintln!("waiting: {}", String::from_utf8_lossy(&log.stdout).trim());
        std::thread::sleep(Duration::from_secs(1));
        None
    });
    let nodes: serde_json::Value = serde_json::from_str(&answered).expect("peers --json is JSON");
    assert!(
        nodes
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["self"] == true)),
        "the running node lists itself: {nodes}"
    );

    let info = docker_sh_ok(&container, &service.as_service("modchain info --json"));
    let info: serde_json::Value = serde_json::from_str(&info).expect("info --json is JSON");
    assert_eq!(info["data_dir"], "/var/lib/modchain", "{info}");
    assert_eq!(
        docker_sh_ok(&container, "stat -c %U:%a /var/lib/modchain/node.key"),
        "modchain:600"
    );
    // The node read the packaged config, not a template of its own.
    docker_sh_ok(&container, "test ! -e /var/lib/modchain/config.toml");
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&root);
}
