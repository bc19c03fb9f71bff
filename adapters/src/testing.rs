//! Test support shared by the adapter tests and the node's multi-process
//! tests: the Docker image they run, built locally because nothing may be
//! pulled. Not for production use.

use std::process::Command;
use std::sync::OnceLock;

pub const IMAGE: &str = "modchain-test/busybox:2";

/// Builds the test image once per process: a root filesystem holding
/// only a static busybox and its applet links, imported with `docker import`.
pub fn busybox_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if present {
            return;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("busybox not found: apt-get install busybox-static (see .ci/run)");
        let root =
            std::env::temp_dir().join(format!("modchain-busybox-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["bin", "tmp", "outputs", "etc"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        // As in any distribution image, /tmp is world-writable with the sticky bit.
        std::fs::set_permissions(
            root.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("chmod /tmp");
        std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "echo", "cat", "dd", "sleep", "nc", "id", "touch", "ls", "true", "false", "head",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | docker import - {IMAGE}",
                root.display()
            ))
            .status()
            .expect("run docker import");
        assert!(
            status.success(),
            "docker import of the busybox root filesystem failed"
        );
        let _ = std::fs::remove_dir_all(&root);
    });
    IMAGE
}

/// The small LLM the tests and benchmarks run (SmolLM2-135M-Instruct,
/// Q4_1), by the name the llm adapter serves it under.
pub const LLM_TEST_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1";

/// Where that model's GGUF file is: `MODCHAIN_TEST_MODEL`, else where
/// `scripts/fetch-test-model.sh` caches it. Panics, saying how to get it,
/// when the file is not there: the LLM tests fail rather than skip.
pub fn llm_test_model() -> std::path::PathBuf {
    let path = std::env::var_os("MODCHAIN_TEST_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/modchain-models")
                .join(format!("{LLM_TEST_MODEL}.gguf"))
        });
    assert!(
        path.is_file(),
        "the LLM test model is missing at {}: run scripts/fetch-test-model.sh \
         (or set MODCHAIN_TEST_MODEL to a GGUF file)",
        path.display()
    );
    path
}
