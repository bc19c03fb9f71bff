//! The `wasm` adapter: runs a WebAssembly module (WASI preview 1) inside the
//! node with wasmtime. It needs no Docker, which makes it the embedded
//! default: every provider can run it.
//!
//! Limits:
//!
//! - **Deadline and cancel, wherever the guest is.** Each job runs on a
//!   thread of its own, in a single-threaded tokio runtime, with WASI's
//!   asynchronous host calls: the guest's call races a sleep until the
//!   deadline and the job's cancel token, and whichever ends first drops the
//!   others. A guest blocked in a host call (`poll_oneoff` sleeping an hour,
//!   a read) is therefore stopped as promptly as one in a loop. Guest code
//!   itself is preempted through epoch interruption: a ticker advances the
//!   engine's epoch every few milliseconds, and at each tick the store's
//!   callback either stops the guest (deadline passed, job cancelled) or
//!   yields to the runtime so the race above is looked at again.
//! - **Memory, all of it.** One limiter per job sums every linear memory
//!   and every table (a pointer per element) the module creates or grows,
//!   and refuses what would take the total past the job's memory limit:
//!   multi-memory stays on, and eight memories cost eight times one.
//! - Arguments, stdin and environment from the job, stdout/stderr captured,
//!   and the job's output directory preopened as `/outputs` — the only part
//!   of the host it can see.
//!
//! A module is checked at bid time by [`WasmAdapter::validate`] with
//! `wasmparser` (no compilation: cheap, and the caller runs it off its event
//! loop), and compiled only when it runs; compiled modules are kept in a
//! least-recently-used cache bounded by bytes ([`WasmConfig`]).

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
use wasmparser::{Parser, Payload, Validator, WasmFeatures};
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the engine's epoch advances: the granularity of timeouts and
/// cancels for a guest that is running its own code.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Most bytes of stdout/stderr buffered from a guest (the tail is kept).
const CAPTURE_BYTES: usize = 8 << 20;
/// What a table element costs the host: wasmtime stores a pointer per element.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Size of a linear memory page (the only page size this engine accepts).
const WASM_PAGE_BYTES: u64 = 64 << 10;

/// The WebAssembly features the engine runs, and so what bid-time
/// validation accepts: the 3.0 set less what this build of wasmtime leaves
/// out (its `gc` and `threads` features are not compiled in) and the
/// component model (a job is a core module). The engine is configured to
/// the same set in [`WasmAdapter::with_config`], and a test checks that the
/// two agree on modules that use each feature.
fn features() -> WasmFeatures {
    WasmFeatures::WASM3
        & !(WasmFeatures::GC
            | WasmFeatures::GC_TYPES
            | WasmFeatures::EXCEPTIONS
            | WasmFeatures::THREADS
            | WasmFeatures::SHARED_EVERYTHING_THREADS
            | WasmFeatures::COMPONENT_MODEL)
}

/// Settings of the wasm adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmConfig {
    /// Most bytes of compiled modules kept for reuse (least recently used
    /// evicted first); 0 keeps none.
    pub module_cache_bytes: u64,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            module_cache_bytes: 256 << 20,
        }
    }
}

/// What the compiled-module cache holds and has done, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleCacheStats {
    /// Bytes of compiled code held now.
    pub bytes: u64,
    /// Modules held now.
    pub entries: u64,
    /// Modules evicted to stay within the cap, since start.
    pub evictions: u64,
    /// Runs that found their module compiled already, since start.
    pub hits: u64,
    /// Runs that compiled their module, since start.
    pub misses: u64,
}

/// Compiled modules by digest of their bytes, least recently used evicted
/// first once the bytes held pass the cap.
#[derive(Default)]
struct ModuleCache {
    cap: u64,
    modules: HashMap<Digest, (Module, u64, u64)>,
    /// Last use (a counter) → module, oldest first.
    order: BTreeMap<u64, Digest>,
    clock: u64,
    stats: ModuleCacheStats,
}

impl ModuleCache {
    fn get(&mut self, key: &Digest) -> Option<Module> {
        self.clock += 1;
        let clock = self.clock;
        let (module, _, used) = self.modules.get_mut(key)?;
        self.order.remove(used);
        *used = clock;
        self.order.insert(clock, *key);
        self.stats.hits += 1;
        Some(module.clone())
    }

    fn insert(&mut self, key: Digest, module: Module, weight: u64) {
        self.stats.misses += 1;
        if weight > self.cap || self.modules.contains_key(&key) {
            return;
        }
        while self.stats.bytes + weight > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, _)) = self.modules.remove(&oldest) {
                self.stats.bytes -= w;
                self.stats.evictions += 1;
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.modules.insert(key, (module, weight, self.clock));
        self.stats.bytes += weight;
        self.stats.entries = self.modules.len() as u64;
    }

    fn stats(&self) -> ModuleCacheStats {
        ModuleCacheStats {
            entries: self.modules.len() as u64,
            ..self.stats
        }
    }
}

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

/// Caps the sum of all linear memories and tables of a job, and remembers
/// whether the cap was hit, so a guest that dies of it is reported as out
/// of memory with what it asked for.
struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes granted so far, across every memory and table.
    used: usize,
    /// The last growth granted, taken back if the engine then fails it.
    last_grant: usize,
    /// The total a refused growth would have reached.
    refused_at: Option<usize>,
}

impl MemoryLimiter {
    fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            used: 0,
            last_grant: 0,
            refused_at: None,
        }
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.max_bytes {
            self.refused_at = Some(total);
            self.last_grant = 0;
            return false;
        }
        self.used = total;
        self.last_grant = more;
        true
    }

    fn grow_failed(&mut self) {
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
    }

    fn hit(&self) -> bool {
        self.refused_at.is_some()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
}

/// What bid-time validation learned of a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleFacts {
    /// Bytes of memories and tables the module needs before it runs a
    /// single instruction: the sum of their declared minimum sizes.
    pub initial_bytes: u64,
}

/// Why a run ended early, as the guest's exit status.
fn stop_status(cancelled: bool) -> ExitStatus {
    if cancelled {
        ExitStatus::Cancelled
    } else {
        ExitStatus::TimedOut
    }
}

#[derive(Clone)]
pub struct WasmAdapter {
    engine: Engine,
    modules: Arc<Mutex<ModuleCache>>,
}

impl std::fmt::Debug for WasmAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WasmAdapter")
    }
}

impl WasmAdapter {
    /// An adapter with the default settings.
    pub fn new() -> Result<Self, AdapterError> {
        Self::with_config(WasmConfig::default())
    }

    pub fn with_config(settings: WasmConfig) -> Result<Self, AdapterError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // The same feature set bid-time validation accepts (see `features`;
        // threads are off in this build of wasmtime already).
        config.wasm_gc(false);
        config.wasm_component_model(false);
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
            modules: Arc::new(Mutex::new(ModuleCache {
                cap: settings.module_cache_bytes,
                ..ModuleCache::default()
            })),
        })
    }

    /// What the compiled-module cache holds and has done.
    pub fn cache_stats(&self) -> ModuleCacheStats {
        self.modules.lock().map(|c| c.stats()).unwrap_or_default()
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
            (None, Some(wat)) => wat::parse_str(wat).map_err(|e| {
                AdapterError::InvalidParams(format!("not a valid WebAssembly module: {e}"))
            })?,
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

    /// Checks a binary module with `wasmparser`, without compiling it: that
    /// it is a valid core module of the features this engine runs. Cheap
    /// next to compiling, but linear in the module's size: callers on an
    /// event loop run it on a blocking pool.
    pub fn check_module(&self, bytes: &[u8]) -> Result<ModuleFacts, AdapterError> {
        let invalid = |e: &dyn std::fmt::Display| {
            AdapterError::InvalidParams(format!("not a valid WebAssembly module: {e}"))
        };
        Validator::new_with_features(features())
            .validate_all(bytes)
            .map_err(|e| invalid(&e))?;
        let mut initial_bytes = 0u64;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| invalid(&e))? {
                Payload::MemorySection(s) => {
                    for m in s {
                        let m = m.map_err(|e| invalid(&e))?;
                        initial_bytes =
                            initial_bytes.saturating_add(m.initial.saturating_mul(WASM_PAGE_BYTES));
                    }
                }
                Payload::TableSection(s) => {
                    for t in s {
                        let t = t.map_err(|e| invalid(&e))?;
                        initial_bytes = initial_bytes.saturating_add(
                            t.ty.initial.saturating_mul(TABLE_ELEMENT_BYTES as u64),
                        );
                    }
                }
                _ => {}
            }
        }
        Ok(ModuleFacts { initial_bytes })
    }

    /// The bid-time check of a job: its parameters, its module (with
    /// [`Self::check_module`]), and that the memories and tables the module
    /// declares fit the job's memory limit before it runs an instruction.
    pub fn check(
        &self,
        method: &str,
        params: &serde_json::Value,
        memory_limit: u64,
    ) -> Result<ModuleFacts, AdapterError> {
        let (_, bytes) = self.parse(method, params)?;
        let facts = self.check_module(&bytes)?;
        if facts.initial_bytes > memory_limit {
            return Err(AdapterError::InvalidParams(format!(
                "the module's memories and tables need {} bytes at start, more than the job's memory limit of {memory_limit} bytes",
                facts.initial_bytes
            )));
        }
        Ok(facts)
    }

    /// Compiles (or finds in the cache) a binary module. Compiling takes
    /// long for a large module: callers keep it off any event loop.
    pub fn module(&self, bytes: &[u8]) -> Result<Module, AdapterError> {
        let key = Digest::of(bytes);
        if let Some(m) = self.modules.lock().ok().and_then(|mut c| c.get(&key)) {
            return Ok(m);
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| {
            AdapterError::InvalidParams(format!("not a valid WebAssembly module: {e}"))
        })?;
        // What the module holds in memory: its compiled image, at least
        // the size of its source.
        let image = module.image_range();
        let weight = (image.end as usize)
            .saturating_sub(image.start as usize)
            .max(bytes.len()) as u64;
        if let Ok(mut cache) = self.modules.lock() {
            cache.insert(key, module.clone(), weight);
        }
        Ok(module)
    }

    /// Runs a module to completion on the current thread, which it blocks:
    /// a single-threaded runtime of its own drives the guest's asynchronous
    /// host calls. Must not be called from within a tokio runtime.
    fn run_blocking(
        &self,
        ctx: &ExecutionContext,
        p: &RunParams,
        bytes: &[u8],
    ) -> Result<ExecutionReport, AdapterError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                AdapterError::RuntimeUnavailable(format!("no runtime for the wasm job: {e}"))
            })?;
        let started = Instant::now();
        let report = rt.block_on(async {
            let module = self.module(bytes)?;
            self.run_async(ctx, p, &module, started).await
        });
        // A host call still blocked in the runtime's pool (a file read)
        // must not hold the job's thread: leave it behind.
        rt.shutdown_background();
        let report = report?;
        tracing::info!(
            job = %ctx.job_id.to_hex(),
            wall_ms = report.usage.wall_ms,
            timeout_ms = ctx.timeout.as_millis() as u64,
            exit = ?report.exit,
            "wasm job ended"
        );
        Ok(report)
    }

    async fn run_async(
        &self,
        ctx: &ExecutionContext,
        p: &RunParams,
        module: &Module,
        started: Instant,
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
            .stderr(stderr.clone())
            // Never block the job's thread inside a host call (wasi's
            // `poll_oneoff` would `thread::sleep` a lone relative timer):
            // every wait must be one the deadline and cancel can drop.
            .allow_blocking_current_thread(false);
        builder
            .preopened_dir(&ctx.output_dir, "/outputs", FsPerms::ReadWrite)
            .map_err(|e| AdapterError::OutputDir {
                path: ctx.output_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let max_bytes = usize::try_from(ctx.limits.memory_bytes).unwrap_or(usize::MAX);
        let guest = Guest {
            wasi: builder.build_p1(),
            limiter: MemoryLimiter::new(max_bytes),
        };
        let mut store = Store::new(&self.engine, guest);
        store.limiter(|g| &mut g.limiter);
        let deadline = started + ctx.timeout;
        let cancel = ctx.cancel.clone();
        // Set by the epoch callback when it interrupts the guest's own code.
        let stop: Arc<Mutex<Option<ExitStatus>>> = Arc::new(Mutex::new(None));
        let stop_cb = stop.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let cancelled = cancel.is_cancelled();
            if cancelled || Instant::now() >= deadline {
                if let Ok(mut g) = stop_cb.lock() {
                    *g = Some(stop_status(cancelled));
                }
                return Ok(UpdateDeadline::Interrupt);
            }
            // Give the runtime a turn, so the deadline and cancel below are
            // looked at even while the guest computes.
            Ok(UpdateDeadline::Yield(1))
        });
        let mut linker: Linker<Guest> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |g: &mut Guest| &mut g.wasi)
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        let outcome = {
            let store = &mut store;
            let run = async move {
                let instance = linker.instantiate_async(&mut *store, module).await?;
                let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                start.call_async(&mut *store, ()).await
            };
            // Whichever ends first drops the others: a guest waiting in a
            // host call is dropped with the call.
            tokio::select! {
                r = run => Ok(r),
                _ = tokio::time::sleep_until(deadline.into()) => Err(ExitStatus::TimedOut),
                _ = ctx.cancel.cancelled() => Err(ExitStatus::Cancelled),
            }
        };
        let wall_ms = started.elapsed().as_millis() as u64;
        let mut stderr_bytes = stderr.contents().to_vec();
        let stopped = stop.lock().ok().and_then(|g| g.clone());
        let limiter = &store.data().limiter;
        let exit = match (stopped, outcome) {
            (Some(s), _) | (None, Err(s)) => s,
            (None, Ok(Ok(()))) => ExitStatus::Exited(0),
            (None, Ok(Err(e))) => {
                if let Some(code) = e.downcast_ref::<I32Exit>() {
                    ExitStatus::Exited(code.0)
                } else if limiter.hit() {
                    ExitStatus::OutOfMemory
                } else {
                    // A trap: the guest crashed, like a process killed by a signal.
                    stderr_bytes.extend_from_slice(format!("\nwasm trap: {e:#}\n").as_bytes());
                    ExitStatus::Exited(134)
                }
            }
        };
        let exit = match exit {
            ExitStatus::Exited(c) if c != 0 && limiter.hit() => ExitStatus::OutOfMemory,
            other => other,
        };
        if let (ExitStatus::OutOfMemory, Some(asked)) = (&exit, limiter.refused_at) {
            stderr_bytes.extend_from_slice(
                format!(
                    "\nwasm: memory limit reached: the module's memories and tables together asked for {asked} bytes; the job's limit is {max_bytes} bytes (the job's memory requirement)\n"
                )
                .as_bytes(),
            );
        }
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
    /// uses [`Adapter::execute`]; benchmarks call this to measure in-process
    /// runs. Must not be called from within a tokio runtime.
    pub fn run_now(
        &self,
        ctx: &ExecutionContext,
        params: &serde_json::Value,
    ) -> Result<ExecutionReport, AdapterError> {
        let (p, bytes) = self.parse("run", params)?;
        self.run_blocking(ctx, &p, &bytes)
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
        self.check_module(&bytes).map(|_| ())
    }

    fn execute<'a>(
        &'a self,
        ctx: ExecutionContext,
        method: &'a str,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExecutionReport, AdapterError>> {
        Box::pin(async move {
            let method = method.to_string();
            let params = params.clone();
            let this = self.clone();
            // A thread of its own, not the caller's runtime: the guest's
            // code runs between epoch ticks and must not take a worker
            // thread the node's event loop needs.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("wasm-job".into())
                .spawn(move || {
                    let ran = this
                        .parse(&method, &params)
                        .and_then(|(p, bytes)| this.run_blocking(&ctx, &p, &bytes));
                    let _ = tx.send(ran);
                })
                .map_err(|e| {
                    AdapterError::Runtime(format!("cannot start the wasm job's thread: {e}"))
                })?;
            rx.await
                .map_err(|e| AdapterError::Runtime(format!("the wasm job's thread failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bid_time_validation_accepts_what_the_engine_accepts() {
        let a = WasmAdapter::new().expect("engine");
        for (what, wat) in [
            ("mvp", "(module (func))"),
            ("simd", "(module (func (drop (v128.const i64x2 0 0))))"),
            (
                "relaxed simd",
                "(module (func (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i64x2 0 0)))))",
            ),
            ("multi-memory", "(module (memory 1) (memory 1))"),
            ("memory64", "(module (memory i64 1))"),
            ("tail calls", "(module (func $f (return_call $f)))"),
            (
                "extended constants",
                "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
            ),
            (
                "function references",
                "(module (type $t (func)) (func (param (ref $t))))",
            ),
            ("threads", "(module (memory 1 1 shared))"),
            ("gc", "(module (type (struct)))"),
            ("exceptions", "(module (tag))"),
        ] {
            let bytes = wat::parse_str(wat).expect("wat");
            let ours = a.check_module(&bytes).is_ok();
            let engine = Module::validate(&a.engine, &bytes).is_ok();
            assert_eq!(
                ours, engine,
                "{what}: bid-time validation says {ours}, the engine {engine}"
            );
        }
    }

    #[test]
    fn the_module_cache_evicts_the_least_recently_used_to_stay_within_its_bytes() {
        let a = WasmAdapter::new().expect("engine");
        let module = Module::new(&a.engine, "(module)").expect("module");
        let key = |n: u8| Digest::of(&[n]);
        let mut c = ModuleCache {
            cap: 300,
            ..ModuleCache::default()
        };
        for n in 1..=3 {
            c.insert(key(n), module.clone(), 100);
        }
        assert!(c.get(&key(1)).is_some());
        // Over the cap: the least recently used (2, since 1 was just used) goes.
        c.insert(key(4), module.clone(), 100);
        assert!(c.get(&key(2)).is_none());
        assert!(c.get(&key(1)).is_some() && c.get(&key(3)).is_some());
        let s = c.stats();
        assert_eq!((s.bytes, s.entries, s.evictions), (300, 3, 1));
        // A module bigger than the whole cache is not kept, and evicts nothing.
        c.insert(key(5), module, 301);
        assert!(c.get(&key(5)).is_none());
        assert_eq!(c.stats().evictions, 1);
    }
}
