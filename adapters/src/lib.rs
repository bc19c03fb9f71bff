//! # modchain-adapters
//!
//! Workload executors behind one trait, [`Adapter`]: `docker`, `wasm` and
//! `llm` (GGUF models in-process with llama.cpp, or through Ollama). An adapter has a name,
//! offers methods with JSON Schemas for their parameters, validates
//! parameters before anything runs, and executes a method in an
//! [`ExecutionContext`] (job id, limits, deadline, cancellation, an output
//! directory and a log sink). The node advertises what the registered
//! adapters offer and hands them the jobs its provider role wins.

pub mod adapter;
pub mod docker;
pub mod llm;
pub mod outputs;
#[doc(hidden)]
pub mod testing;
pub mod wasm;

pub use adapter::{
    Adapter, AdapterError, DEFAULT_LOG_QUOTA_BYTES, ExecutionContext, Limits, LogDrops, LogLine,
    LogSink, LogStream, MethodSpec,
};
