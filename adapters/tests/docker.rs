//! The docker adapter against the real Docker daemon. The test image is
//! built locally from Debian's busybox-static (nothing is pulled); `.ci/run`
//! installs docker.io and busybox-static and starts dockerd.

use modchain_adapters::docker::{
    DockerAdapter, DockerConfig, JOB_LABEL, MANAGED_LABEL, NODE_LABEL,
};
use modchain_adapters::{Adapter, AdapterError, ExecutionContext, Limits, LogSink};
use modchain_protocol::{Digest, ExecutionReport, ExitStatus};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn test_image() -> &'static str {
    modchain_adapters::testing::busybox_image()
}

/// Each test acts as its own node, so one test's start-up cleanup never
/// touches another's containers.
fn adapter_for(node: &str) -> DockerAdapter {
    adapter_with(node, DockerConfig::default())
}

/// An adapter with `config`, allowing the test image's repository unless
/// `config` names an allowlist of its own.
fn adapter_with(node: &str, config: DockerConfig) -> DockerAdapter {
    let allowed_images = if config.allowed_images.is_empty() {
        vec!["modchain-test/*".to_string()]
    } else {
        config.allowed_images.clone()
    };
    DockerAdapter::connect(DockerConfig {
        node: format!("test-{node}-{}", std::process::id()),
        allowed_images,
        ..config
    })
    .expect("docker client")
}

fn adapter() -> DockerAdapter {
    adapter_for("shared")
}

fn ctx(name: &str, limits: Limits, timeout: Duration) -> ExecutionContext {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("modchain-docker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ExecutionContext {
        job_id: Digest::of(format!("{name}-{}", std::process::id()).as_bytes()),
        limits,
        timeout,
        cancel: CancellationToken::new(),
        output_dir: dir,
        logs: LogSink::discard(),
    }
}

async fn run(name: &str, cmd: &[&str], limits: Limits, timeout: Duration) -> ExecutionReport {
    let a = adapter();
    let params = serde_json::json!({"image": test_image(), "cmd": cmd});
    a.execute(ctx(name, limits, timeout), "run", &params)
        .await
        .expect("job ran")
}

fn containers_labelled(label: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn stdout_stderr_and_exit_code_come_back_and_the_container_is_removed() {
    let (sink, mut rx) = LogSink::new();
    let a = adapter();
    let mut c = ctx("stdout", Limits::default(), Duration::from_secs(30));
    c.logs = sink;
    let params = serde_json::json!({"image": test_image(), "cmd": ["sh", "-c", "echo hello; echo oops >&2; exit 3"]});
    let r = a.execute(c.clone(), "run", &params).await.expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::Exited(3)));
    assert_eq!(r.stdout, b"hello\n");
    assert_eq!(r.stderr, b"oops\n");
    let mut streamed = Vec::new();
    while let Ok(line) = rx.try_recv() {
        streamed.extend_from_slice(&line.data);
    }
    assert!(String::from_utf8_lossy(&streamed).contains("hello"));
    let leftover = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=modchain.job={}", c.job_id.to_hex()),
        ])
        .output()
        .expect("docker ps");
    assert!(leftover.stdout.is_empty(), "container was not removed");
}

#[tokio::test]
async fn a_job_over_its_memory_limit_is_killed_and_reported() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let r = run(
        "oom",
        &["dd", "if=/dev/zero", "bs=200M", "count=1", "of=/dev/null"],
        limits,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.exit, Some(ExitStatus::OutOfMemory));
}

#[tokio::test]
async fn a_job_cannot_reach_the_network() {
    // 10.0.0.1 is never contacted: with no network there is no route at all.
    let r = run(
        "net",
        &["sh", "-c", "nc -w 2 10.0.0.1 80 </dev/null"],
        Limits::default(),
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.exit, Some(ExitStatus::Exited(0)));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Network is unreachable"),
        "{:?}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[tokio::test]
async fn the_container_is_locked_down() {
    let r = run(
        "lockdown",
        &["sh", "-c", "id -u; touch /etc/x 2>/dev/null && echo root-writable; touch /tmp/ok && echo tmp-writable"],
        Limits::default(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "65534\ntmp-writable\n");
}

#[tokio::test]
async fn files_written_to_outputs_are_collected() {
    let r = run(
        "outputs",
        &["sh", "-c", "echo result > /outputs/answer.txt"],
        Limits::default(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.outputs[0].name, "answer.txt");
    assert_eq!(r.outputs[0].digest, Digest::of(b"result\n"));
    assert_eq!(r.outputs[0].inline.as_deref(), Some(&b"result\n"[..]));
}

#[tokio::test]
async fn a_job_past_its_timeout_is_stopped() {
    let r = run(
        "timeout",
        &["sleep", "30"],
        Limits::default(),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(r.exit, Some(ExitStatus::TimedOut));
    assert!(r.usage.wall_ms < 10_000);
}

/// Ids of the job's containers that are running now.
fn running_containers_of(job: &Digest) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label={JOB_LABEL}={}", job.to_hex()),
            "--filter",
            "status=running",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes the job's containers when dropped. A test that fails while the
/// adapter still runs the job drops the adapter's task with its runtime, and
/// the adapter never gets to remove the container itself.
struct RemoveContainersOf(Digest);

impl Drop for RemoveContainersOf {
    fn drop(&mut self) {
        let label = format!("label={JOB_LABEL}={}", self.0.to_hex());
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

#[tokio::test]
async fn cancel_stops_the_container() {
    let a = adapter_for("cancel");
    let (sink, mut logs) = LogSink::new();
    let mut c = ctx("cancel", Limits::default(), Duration::from_secs(600));
    c.logs = sink;
    let job = c.job_id;
    let _cleanup = RemoveContainersOf(job);
    let token = c.cancel.clone();
    // The job would run for ten minutes: only the cancel can end it within
    // the ceilings below.
    let params = serde_json::json!({
        "image": test_image(),
        "cmd": ["sh", "-c", "echo started; exec sleep 600"],
    });
    let run = tokio::spawn(async move { a.execute(c, "run", &params).await });

    // Cancel only once the job is really running: its first line has come
    // back through the log stream and its container is up.
    let up = tokio::time::timeout(Duration::from_secs(120), async {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("started") {
            match logs.recv().await {
                Some(line) => seen.extend_from_slice(&line.data),
                None => return false,
            }
        }
        true
    })
    .await;
    assert_eq!(up, Ok(true), "the job never printed its first line");
    assert_eq!(
        running_containers_of(&job).len(),
        1,
        "the job's container is not running before the cancel"
    );
    token.cancel();

    let r = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the cancelled job did not end")
        .expect("the job's task")
        .expect("ran");
    assert_eq!(r.exit, Some(ExitStatus::Cancelled));
    assert_eq!(r.stdout, b"started\n");
    assert_eq!(
        containers_labelled(&format!("{JOB_LABEL}={}", job.to_hex())),
        0,
        "a container of the cancelled job is left behind"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_runs() {
    let a = adapter();
    let c = ctx("bad", Limits::default(), Duration::from_secs(5));
    let missing = serde_json::json!({"image": "modchain-test/never-built:0", "cmd": ["true"]});
    assert!(matches!(
        a.execute(c.clone(), "run", &missing).await,
        Err(AdapterError::ImageNotPresent(_))
    ));
    // Once the images are listed, validation alone refuses a missing one.
    assert!(a.validate("run", &missing).is_ok(), "unknown until listed");
    assert!(a.refresh_images().await.expect("list images") >= 1);
    assert!(matches!(
        a.validate("run", &missing),
        Err(AdapterError::ImageNotPresent(_))
    ));
    let present = serde_json::json!({"image": test_image(), "cmd": ["true"]});
    assert!(a.validate("run", &present).is_ok());
    let malformed = serde_json::json!({"image": 5});
    assert!(matches!(
        a.validate("run", &malformed),
        Err(AdapterError::InvalidParams(_))
    ));
    let unknown_field = serde_json::json!({"image": "x", "privileged": true});
    assert!(matches!(
        a.validate("run", &unknown_field),
        Err(AdapterError::InvalidParams(_))
    ));
    let err = a
        .validate("exec", &serde_json::json!({}))
        .expect_err("unknown method");
    assert!(err.to_string().contains("offers: run"), "{err}");
    let net = serde_json::json!({"image": "modchain-test/x", "network": true});
    assert!(matches!(
        a.validate("run", &net),
        Err(AdapterError::NetworkNotAllowed)
    ));
}

#[tokio::test]
async fn containers_left_by_a_crashed_node_are_removed_at_start_up() {
    let image = test_image();
    let node = format!("test-crashed-{}", std::process::id());
    let other = format!("test-neighbour-{}", std::process::id());
    for n in [&node, &other] {
        let status = Command::new("docker")
            .args([
                "create",
                "--label",
                &format!("{MANAGED_LABEL}=true"),
                "--label",
                &format!("{NODE_LABEL}={n}"),
                "--network",
                "none",
                image,
                "true",
            ])
            .output()
            .expect("docker create");
        assert!(status.status.success());
    }
    let restarted = DockerAdapter::connect(DockerConfig {
        node: node.clone(),
        ..DockerConfig::default()
    })
    .expect("client");
    assert_eq!(restarted.remove_orphans().await.expect("cleanup"), 1);
    assert_eq!(containers_labelled(&format!("{NODE_LABEL}={node}")), 0);
    // A neighbour node's container on the same daemon is left alone.
    assert_eq!(containers_labelled(&format!("{NODE_LABEL}={other}")), 1);
    let neighbour = DockerAdapter::connect(DockerConfig {
        node: other,
        ..DockerConfig::default()
    })
    .expect("client");
    assert_eq!(neighbour.remove_orphans().await.expect("cleanup"), 1);
}

/// The local test image's id (`sha256:<64 hex>`).
fn test_image_id() -> String {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", test_image()])
        .output()
        .expect("docker image inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn an_image_outside_the_allowlist_is_refused_naming_the_config_key() {
    let a = adapter_with(
        "allowlist",
        DockerConfig {
            allowed_images: vec!["busybox:*".into()],
            ..DockerConfig::default()
        },
    );
    let params = serde_json::json!({"image": test_image(), "cmd": ["true"]});
    let err = a.validate("run", &params).expect_err("not allowed");
    assert!(matches!(err, AdapterError::ImageNotAllowed { .. }), "{err}");
    let said = err.to_string();
    assert!(
        said.contains("allowed_images") && said.contains("busybox:*"),
        "{said}"
    );
    let err = a
        .execute(
            ctx("allowlist", Limits::default(), Duration::from_secs(30)),
            "run",
            &params,
        )
        .await
        .expect_err("ran an image outside the allowlist");
    assert!(matches!(err, AdapterError::ImageNotAllowed { .. }), "{err}");
}

#[tokio::test]
async fn an_empty_allowlist_runs_no_image() {
    // Not `adapter_with`, which fills in the test image's repository.
    let a = DockerAdapter::connect(DockerConfig {
        node: format!("test-empty-{}", std::process::id()),
        ..DockerConfig::default()
    })
    .expect("docker client");
    let id = test_image_id();
    for image in [
        test_image().to_string(),
        id.clone(),
        format!("{}@{id}", test_image()),
    ] {
        let params = serde_json::json!({"image": image, "cmd": ["true"]});
        let err = a
            .validate("run", &params)
            .expect_err("allowed with an empty allowlist");
        let said = err.to_string();
        assert!(
            said.contains("allowed_images") && said.contains("empty"),
            "{image}: {said}"
        );
        let err = a
            .execute(
                ctx("empty", Limits::default(), Duration::from_secs(30)),
                "run",
                &params,
            )
            .await
            .expect_err("ran with an empty allowlist");
        assert!(matches!(err, AdapterError::ImageNotAllowed { .. }), "{err}");
    }
}

#[tokio::test]
async fn require_digest_runs_only_the_image_named_by_its_digest() {
    let a = adapter_with(
        "digest",
        DockerConfig {
            require_digest: true,
            ..DockerConfig::default()
        },
    );
    a.refresh_images().await.expect("list images");
    // A tag alone: refused, saying what to ask for.
    let err = a
        .validate("run", &serde_json::json!({"image": test_image()}))
        .expect_err("a tag under require_digest");
    assert!(matches!(err, AdapterError::DigestRequired { .. }), "{err}");
    assert!(err.to_string().contains("require_digest"), "{err}");

    // The right digest: runs.
    let id = test_image_id();
    let pinned = format!("{}@{id}", test_image());
    let params = serde_json::json!({"image": pinned, "cmd": ["sh", "-c", "echo pinned"]});
    a.validate("run", &params)
        .expect("the pinned image is admitted");
    let r = a
        .execute(
            ctx("digest-ok", Limits::default(), Duration::from_secs(30)),
            "run",
            &params,
        )
        .await
        .expect("ran");
    assert_eq!(
        r.exit,
        Some(ExitStatus::Exited(0)),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.stdout, b"pinned\n");

    // Another digest under the same name: refused, naming the one found.
    let wrong = format!("{}@sha256:{}", test_image(), "0".repeat(64));
    let params = serde_json::json!({"image": wrong, "cmd": ["true"]});
    let err = a
        .execute(
            ctx("digest-bad", Limits::default(), Duration::from_secs(30)),
            "run",
            &params,
        )
        .await
        .expect_err("ran an image whose digest differs");
    assert!(matches!(err, AdapterError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&id), "{err}");
}
