//! The `wasm` adapter: runs a WebAssembly module (WASI preview 1) inside the
//! node with wasmtime. It needs no Docker, which makes it the embedded
//! default: every provider can run it.
//!
//! Limits: wall-clock deadline and cancellation through epoch interruption (a
//! ticker advances the engine's epoch every few milliseconds; the store's
//! callback stops the guest once the deadline passed or the job was
//! cancelled), linear memory capped by a resource limiter, arguments, stdin
//! and environment from the job, stdout/stderr captured, and the job's output
//! directory preopened as `/outputs` — the only part of the host it can see.

use crate::adapter::{
    Adapter, AdapterError, BoxFuture, ExecutionContext, LogStream, MethodSpec, unknown_method,
};
use crate::outputs;
use base64::Engine as _;
use modchain_protocol::{Digest, ExecutionReport, ExitStatus, Usage, limits, tail_bytes};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the engine's epoch advances: the granularity of timeouts and cancels.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Most bytes of stdout/stderr buffered from a guest (the tail is kept).
const CAPTURE_BYTES: usize = 8 << 20;
/// Compiled modules kept for reuse, by digest of their bytes.
const MODULE_CACHE: usize = 32;

/// Parameters of the `run` method.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// The module's binary, base64-encoded (standard alphabet).
    #[serde(default)]
    pub wasm_base64: Option<String>,
    /// The module in the WebAssembly text format.
    #[serde(default)]
    pub wat: Option<String>,
    /// Arguments after the program name.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Standard input, as text.
    #[serde(default)]
    pub stdin: String,
}

struct Guest {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// Caps linear memory and remembers whether the cap was hit, so a guest
/// that dies of it is reported as out of memory.
struct MemoryLimiter {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

#[derive(Clone)]
pub struct WasmAdapter {
    engine: Engine,
    modules: Arc<Mutex<HashMap<Digest, Module>>>,
}

impl std::fmt::Debug for WasmAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WasmAdapter")
    }
}

impl WasmAdapter {
    pub fn new() -> Result<Self, AdapterError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine =
            Engine::new(&config).map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        // The ticker lives as long as the engine does.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        Ok(WasmAdapter {
            engine,
            modules: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn parse(
        &self,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<(RunParams, Vec<u8>), AdapterError> {
        if method != "run" {
            return Err(unknown_method(self, method));
        }
        let p: RunParams = serde_json::from_value(params.clone())
            .map_err(|e| AdapterError::InvalidParams(e.to_string()))?;
        let bytes = match (&p.wasm_base64, &p.wat) {
            (Some(b64), None) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    AdapterError::InvalidParams(format!("`wasm_base64` is not valid base64: {e}"))
                })?,
            (None, Some(wat)) => wat.as_bytes().to_vec(),
            _ => {
                return Err(AdapterError::InvalidParams(
                    "give exactly one of `wasm_base64` (a binary module) or `wat` (text)".into(),
                ));
            }
        };
        if p.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return Err(AdapterError::InvalidParams(
                "environment variable names must be non-empty and contain no `=`".into(),
            ));
        }
        Ok((p, bytes))
    }

    /// Compiles (or finds in the cache) a module from binary or text bytes.
    pub fn module(&self, bytes: &[u8]) -> Result<Module, AdapterError> {
        let key = Digest::of(bytes);
        if let Some(m) = self.modules.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(m);
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| {
            AdapterError::InvalidParams(format!("not a valid WebAssembly module: {e}"))
        })?;
        if let Ok(mut cache) = self.modules.lock() {
            if cache.len() >= MODULE_CACHE {
                cache.clear();
            }
            cache.insert(key, module.clone());
        }
        Ok(module)
    }

    /// Runs a module to completion on the current thread (blocking).
    fn run_blocking(
        &self,
        ctx: &ExecutionContext,
        p: &RunParams,
        module: &Module,
    ) -> Result<ExecutionReport, AdapterError> {
        std::fs::create_dir_all(&ctx.output_dir).map_err(|source| AdapterError::OutputDir {
            path: ctx.output_dir.clone(),
            source,
        })?;
        let stdout = MemoryOutputPipe::new(CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURE_BYTES);
        let mut args = vec!["main.wasm".to_string()];
        args.extend(p.args.iter().cloned());
        let env: Vec<(&String, &String)> = p.env.iter().collect();
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&args)
            .envs(&env)
            .stdin(MemoryInputPipe::new(p.stdin.clone().into_bytes()))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        builder
            .preopened_dir(&ctx.output_dir, "/outputs", FsPerms::ReadWrite)
            .map_err(|e| AdapterError::OutputDir {
                path: ctx.output_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let guest = Guest {
            wasi: builder.build_p1(),
            limiter: MemoryLimiter {
                max_bytes: usize::try_from(ctx.limits.memory_bytes).unwrap_or(usize::MAX),
                hit: false,
            },
        };
        let mut store = Store::new(&self.engine, guest);
        store.limiter(|g| &mut g.limiter);
        let started = Instant::now();
        let deadline = started + ctx.timeout;
        let cancel = ctx.cancel.clone();
        let stop: Arc<Mutex<Option<ExitStatus>>> = Arc::new(Mutex::new(None));
        let stop_cb = stop.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let why = if cancel.is_cancelled() {
                Some(ExitStatus::Cancelled)
            } else if Instant::now() >= deadline {
                Some(ExitStatus::TimedOut)
            } else {
                None
            };
            match why {
                Some(s) => {
                    if let Ok(mut g) = stop_cb.lock() {
                        *g = Some(s);
                    }
                    Ok(UpdateDeadline::Interrupt)
                }
                None => Ok(UpdateDeadline::Continue(1)),
            }
        });
        let mut linker: Linker<Guest> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |g: &mut Guest| &mut g.wasi)
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        let outcome = linker
            .instantiate(&mut store, module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        let wall_ms = started.elapsed().as_millis() as u64;
        let mut stderr_bytes = stderr.contents().to_vec();
        let stopped = stop.lock().ok().and_then(|g| g.clone());
        let exit = match (stopped, outcome) {
            (Some(s), _) => s,
            (None, Ok(())) => ExitStatus::Exited(0),
            (None, Err(e)) => {
                if let Some(code) = e.downcast_ref::<I32Exit>() {
                    ExitStatus::Exited(code.0)
                } else if store.data().limiter.hit {
                    ExitStatus::OutOfMemory
                } else {
                    // A trap: the guest crashed, like a process killed by a signal.
                    stderr_bytes.extend_from_slice(format!("\nwasm trap: {e:#}\n").as_bytes());
                    ExitStatus::Exited(134)
                }
            }
        };
        let exit = match exit {
            ExitStatus::Exited(c) if c != 0 && store.data().limiter.hit => ExitStatus::OutOfMemory,
            other => other,
        };
        let stdout_bytes = stdout.contents().to_vec();
        ctx.logs.send(LogStream::Stdout, &stdout_bytes);
        ctx.logs.send(LogStream::Stderr, &stderr_bytes);
        let outputs =
            outputs::collect(&ctx.output_dir).map_err(|source| AdapterError::OutputDir {
                path: ctx.output_dir.clone(),
                source,
            })?;
        Ok(ExecutionReport {
            exit: Some(exit),
            stdout: tail_bytes(&stdout_bytes, limits::MAX_LOG_BYTES),
            stderr: tail_bytes(&stderr_bytes, limits::MAX_LOG_BYTES),
            outputs,
            usage: Usage {
                wall_ms,
                cpu_ms: wall_ms,
                ..Usage::default()
            },
        })
    }

    /// Validates, compiles and runs a module on the current thread. The node
    /// uses [`Adapter::execute`]; benchmarks call this to measure in-process runs.
    pub fn run_now(
        &self,
        ctx: &ExecutionContext,
        params: &serde_json::Value,
    ) -> Result<ExecutionReport, AdapterError> {
        let (p, bytes) = self.parse("run", params)?;
        let module = self.module(&bytes)?;
        self.run_blocking(ctx, &p, &module)
    }
}

impl Adapter for WasmAdapter {
    fn name(&self) -> &str {
        "wasm"
    }

    fn methods(&self) -> Vec<MethodSpec> {
        vec![MethodSpec {
            name: "run".into(),
            description: "Run a WebAssembly module (WASI preview 1) in the node's sandbox".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "oneOf": [{"required": ["wasm_base64"]}, {"required": ["wat"]}],
                "properties": {
                    "wasm_base64": {"type": "string", "contentEncoding": "base64", "description": "the module's binary"},
                    "wat": {"type": "string", "description": "the module in WebAssembly text format"},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "stdin": {"type": "string"}
                }
            }),
        }]
    }

    fn validate(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError> {
        let (_, bytes) = self.parse(method, params)?;
        // Compiling is the only way to know the module is valid; the result is cached.
        self.module(&bytes).map(|_| ())
    }

    fn execute<'a>(
        &'a self,
        ctx: ExecutionContext,
        method: &'a str,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExecutionReport, AdapterError>> {
        Box::pin(async move {
            let (p, bytes) = self.parse(method, params)?;
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let module = this.module(&bytes)?;
                this.run_blocking(&ctx, &p, &module)
            })
            .await
            .map_err(|e| AdapterError::Runtime(format!("the wasm worker failed: {e}")))?
        })
    }
}
