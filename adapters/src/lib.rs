//! Workload adapters (docker, wasm, llm) behind one trait. See issue "Jobs end to end".
