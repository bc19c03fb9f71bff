//! The node's config file (node/src/config.rs), compiled in from its source
//! file so that the fuzz build does not compile the node. A file that
//! parses has bootstrap entries that parse (the check that serde cannot
//! make), and a refusal renders as a message.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The node reads the file as UTF-8; other bytes are refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::Config::parse(text, Path::new("config.toml")) {
        Ok(c) => {
            c.bootstrap_peers(&[])
                .expect("a config that parsed has a bootstrap list that parses");
            let _ = c.prices.to_table();
            let _ = c.llm.rescan_interval();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
