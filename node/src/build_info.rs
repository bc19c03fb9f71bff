//! What this binary is: its version, the git commit it was built from, its
//! features and profile (recorded by `node/build.rs`). A leaf: the CLI's
//! `--version`, the advert, identify and `/metrics` all read it here.

/// The software version peers see (adverts, identify): the crate version
/// and the git commit it was built from (`-modified` when the tree had
/// uncommitted changes), e.g. `0.1.0+3f2a1bc09d4e`.
pub const SOFTWARE_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "+", env!("MODCHAIN_GIT_COMMIT"));

/// What `modchain --version` prints after the name: the software version,
/// the wire protocol version, the cargo features (`cuda` or none) and the
/// build profile, so a bug report names exactly what ran. Built once, at
/// first use: it names a constant of another crate, which `concat!` cannot.
pub fn version_line() -> &'static str {
    static LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{SOFTWARE_VERSION} (protocol {}, features: {}, {} build)",
            modchain_protocol::PROTOCOL_VERSION,
            env!("MODCHAIN_FEATURES"),
            env!("MODCHAIN_PROFILE"),
        )
    });
    LINE.as_str()
}
