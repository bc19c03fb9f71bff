//! The GGUF header reader (adapters/src/llm/gguf.rs), compiled in from its
//! source file so that the fuzz build does not compile the adapters crate
//! (wasmtime, bollard, llama.cpp). Its entry point reads a file, so each
//! input is written to a file of this process first.
#![no_main]

#[allow(dead_code)]
#[path = "../../adapters/src/llm/gguf.rs"]
mod gguf;

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::LazyLock;

static FILE: LazyLock<PathBuf> = LazyLock::new(|| {
    // /dev/shm where there is one: a write per input to a disk would
    // dominate the run.
    let dir = ["/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("modchain-fuzz-gguf-{}.gguf", std::process::id()))
});

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*FILE, data).expect("cannot write the input file");
    if let Ok(summary) = gguf::read(&FILE) {
        assert!(data.starts_with(b"GGUF"));
        let _ = summary;
    }
});
