//! Helpers shared by the integration tests: load a shipped scenario, run it.

#![allow(dead_code)]

use modchain_sim::engine::{Engine, Report};
use modchain_sim::scenario::Scenario;
use std::path::PathBuf;

pub fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("shipped scenario {name} does not load: {e}"),
    }
}

pub fn run(s: Scenario, seed: Option<u64>) -> Report {
    Engine::new(s, seed).run(&mut |_| {})
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modchain-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
