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
