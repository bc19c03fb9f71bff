//! The embedded backend: GGUF models run inside the node by llama.cpp,
//! through the `llama-cpp-2` binding (which builds llama.cpp from source with
//! cmake). CPU by default; all layers on the GPU when the crate is built with
//! the `cuda` feature.
//!
//! Why llama.cpp rather than candle: it is the reference implementation the
//! benchmark compares against, so it meets the speed target by construction
//! (candle's Q4_1 kernel is its unoptimised scalar path); it reads the
//! tokenizer, the chat template and every quantization from the GGUF file
//! itself; and its sampler chain gives seeded, reproducible sampling. The
//! `unsafe` FFI stays inside the binding crate.
//!
//! Models: every `*.gguf` file in the models directory, named by its file
//! stem, and any file listed in the configuration. What the advert needs is
//! read from the file's header ([`super::gguf`]); the weights load on first
//! use and stay loaded, a few models at a time.

use super::gguf::{self, GgufSummary};
use super::text::Output;
use super::{
    ChatMessage, Completion, Embeddings, FinishReason, GenerateRequest, Halt, LlmBackend, LlmError,
    Prompt, Sampling, TokenSink,
};
use crate::adapter::BoxFuture;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use modchain_protocol::ModelInfo;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Tokens decoded at once while reading a prompt.
const BATCH: usize = 512;
/// Template used when a model's own is missing or not one llama.cpp knows.
const FALLBACK_TEMPLATE: &str = "chatml";

/// Where the embedded backend finds its models.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Every `*.gguf` file here is served (`<data-dir>/models`).
    pub models_dir: Option<PathBuf>,
    /// More files to serve, by path.
    pub model_files: Vec<PathBuf>,
    /// Layers offloaded to the GPU; `None`: all of them when built with
    /// `cuda`, none otherwise.
    pub gpu_layers: Option<u32>,
    /// Models kept loaded at once (at least 1); the least recently used is
    /// dropped to load another.
    pub max_loaded: usize,
}

impl EmbeddedConfig {
    pub fn new(models_dir: Option<PathBuf>, model_files: Vec<PathBuf>) -> Self {
        EmbeddedConfig {
            models_dir,
            model_files,
            gpu_layers: None,
            max_loaded: 2,
        }
    }
}

/// A model file found on disk.
#[derive(Clone, Debug)]
struct Entry {
    info: ModelInfo,
    path: PathBuf,
    summary: GgufSummary,
}

/// A model in memory. llama.cpp may write to the model while creating a
/// context (the binding says so), so contexts are created one at a time.
struct Loaded {
    name: String,
    model: LlamaModel,
    new_context: Mutex<()>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("name", &self.name).finish()
    }
}

#[derive(Debug)]
struct State {
    config: EmbeddedConfig,
    entries: RwLock<Vec<Entry>>,
    /// Most recently used last.
    loaded: Mutex<Vec<Arc<Loaded>>>,
    /// Vocabulary-only copies (no weights: the tokenizer and the chat
    /// template), by model name, for counting a prompt's tokens when a
    /// provider decides whether to bid. Loading the weights there would
    /// stall the node's event loop for seconds on a large model.
    vocabs: Mutex<HashMap<String, Arc<LlamaModel>>>,
    /// Files that could not be read, with why: shown by [`EmbeddedBackend::problems`].
    problems: RwLock<Vec<String>>,
}

/// Runs GGUF models in this process. Cloning shares the loaded models.
#[derive(Clone, Debug)]
pub struct EmbeddedBackend {
    state: Arc<State>,
}

/// llama.cpp's global state: initialised once per process (a second
/// initialisation is an error in the binding).
fn llama() -> Result<&'static LlamaBackend, LlmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load at length on stderr; route it to tracing instead.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LlmError::Unavailable(format!("llama.cpp failed to start: {e}")))
}

impl EmbeddedBackend {
    /// Scans the configured places for models. Unreadable files are skipped
    /// (see [`Self::problems`]); a missing models directory serves nothing.
    pub fn new(config: EmbeddedConfig) -> Self {
        let b = EmbeddedBackend {
            state: Arc::new(State {
                config,
                entries: RwLock::new(Vec::new()),
                loaded: Mutex::new(Vec::new()),
                vocabs: Mutex::new(HashMap::new()),
                problems: RwLock::new(Vec::new()),
            }),
        };
        b.rescan();
        b
    }

    /// Looks for models again (files added or removed since).
    pub fn rescan(&self) {
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut problems = Vec::new();
        if let Some(dir) = &self.state.config.models_dir {
            match std::fs::read_dir(dir) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.extension()
                                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
                                && p.is_file()
                        })
                        .collect();
                    found.sort();
                    paths.extend(found);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("{}: {e}", dir.display())),
            }
        }
        paths.extend(self.state.config.model_files.iter().cloned());
        let mut entries: Vec<Entry> = Vec::new();
        for path in paths {
            let name = model_name(&path);
            if entries.iter().any(|e| e.info.name == name) {
                problems.push(format!(
                    "{}: another file already serves model `{name}`",
                    path.display()
                ));
                continue;
            }
            match gguf::read(&path) {
                Ok(summary) => entries.push(Entry {
                    info: ModelInfo {
                        name,
                        parameters: summary.parameters,
                        quantization: summary.quantization.clone(),
                        context_length: summary.context_length,
                    },
                    path,
                    summary,
                }),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        for p in &problems {
            tracing::warn!(problem = %p, "llm: a model file is not served");
        }
        if let Ok(mut w) = self.state.entries.write() {
            *w = entries;
        }
        if let Ok(mut w) = self.state.problems.write() {
            *w = problems;
        }
    }

    /// Model files that were found but are not served, and why.
    pub fn problems(&self) -> Vec<String> {
        self.state
            .problems
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// The path of a served model's file.
    pub fn model_path(&self, model: &str) -> Option<PathBuf> {
        self.entry(model).ok().map(|e| e.path)
    }

    fn entry(&self, model: &str) -> Result<Entry, LlmError> {
        let entries = self
            .state
            .entries
            .read()
            .map_err(|_| LlmError::Unavailable("model registry poisoned".into()))?;
        entries
            .iter()
            .find(|e| e.info.name == model)
            .cloned()
            .ok_or_else(|| LlmError::UnknownModel {
                model: model.to_string(),
                available: {
                    let names: Vec<&str> = entries.iter().map(|e| e.info.name.as_str()).collect();
                    if names.is_empty() {
                        "no models".to_string()
                    } else {
                        names.join(", ")
                    }
                },
            })
    }

    /// The model in memory, loading it (blocking) if it is not.
    fn load(&self, entry: &Entry) -> Result<Arc<Loaded>, LlmError> {
        let backend = llama()?;
        {
            let mut loaded = self
                .state
                .loaded
                .lock()
                .map_err(|_| LlmError::Unavailable("model cache poisoned".into()))?;
            if let Some(i) = loaded.iter().position(|l| l.name == entry.info.name) {
                let l = loaded.remove(i);
                loaded.push(l.clone());
                return Ok(l);
            }
        }
        // Loaded without holding the cache lock: other models stay usable meanwhile.
        let gpu_layers = self
            .state
            .config
            .gpu_layers
            .unwrap_or(if cfg!(feature = "cuda") { u32::MAX } else { 0 });
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, &entry.path, &params).map_err(|e| {
            LlmError::ModelLoad {
                model: entry.info.name.clone(),
                path: entry.path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let l = Arc::new(Loaded {
            name: entry.info.name.clone(),
            model,
            new_context: Mutex::new(()),
        });
        let mut loaded = self
            .state
            .loaded
            .lock()
            .map_err(|_| LlmError::Unavailable("model cache poisoned".into()))?;
        if let Some(i) = loaded.iter().position(|x| x.name == l.name) {
            // Another request loaded it meanwhile: keep one copy.
            return Ok(loaded[i].clone());
        }
        let keep = self.state.config.max_loaded.max(1);
        while loaded.len() >= keep {
            // Running generations hold their own Arc; memory goes when they end.
            loaded.remove(0);
        }
        loaded.push(l.clone());
        Ok(l)
    }

    /// The model if it is in memory already, without loading it.
    fn cached(&self, name: &str) -> Option<Arc<Loaded>> {
        let loaded = self.state.loaded.lock().ok()?;
        loaded.iter().find(|l| l.name == name).cloned()
    }

    /// The model's vocabulary and metadata without its weights (fast to
    /// load, small), kept for later counts.
    fn vocab(&self, entry: &Entry) -> Result<Arc<LlamaModel>, LlmError> {
        let poisoned = || LlmError::Unavailable("vocabulary cache poisoned".into());
        if let Some(v) = self
            .state
            .vocabs
            .lock()
            .map_err(|_| poisoned())?
            .get(&entry.info.name)
        {
            return Ok(v.clone());
        }
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(llama()?, &entry.path, &params).map_err(|e| {
            LlmError::ModelLoad {
                model: entry.info.name.clone(),
                path: entry.path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let model = Arc::new(model);
        self.state
            .vocabs
            .lock()
            .map_err(|_| poisoned())?
            .entry(entry.info.name.clone())
            .or_insert(model.clone());
        Ok(model)
    }

    /// Names of the models whose weights are in memory, least recently used first.
    pub fn loaded_models(&self) -> Vec<String> {
        self.state
            .loaded
            .lock()
            .map(|l| l.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The prompt's tokens, after the chat template (unless raw).
    fn tokenize(
        &self,
        model: &LlamaModel,
        entry: &Entry,
        prompt: &Prompt,
    ) -> Result<Vec<LlamaToken>, LlmError> {
        let text = match prompt {
            Prompt::Text {
                prompt, raw: true, ..
            } => prompt.clone(),
            Prompt::Text {
                prompt,
                system,
                raw: false,
            } => {
                let mut messages = Vec::new();
                if let Some(s) = system {
                    messages.push(ChatMessage {
                        role: "system".into(),
                        content: s.clone(),
                    });
                }
                messages.push(ChatMessage {
                    role: "user".into(),
                    content: prompt.clone(),
                });
                render_chat(model, entry, &messages)?
            }
            Prompt::Chat(messages) => render_chat(model, entry, messages)?,
        };
        // Special tokens in the text are parsed: the template's markers must
        // become the model's control tokens, not plain text.
        Ok(model.vocab().tokenize(text.as_bytes(), true, true))
    }

    /// Generates on the current thread (blocking).
    pub fn generate_blocking(
        &self,
        request: &GenerateRequest,
        threads: u32,
        tokens: TokenSink,
        halt: &Halt,
    ) -> Result<Completion, LlmError> {
        let entry = self.entry(&request.model)?;
        let loaded = self.load(&entry)?;
        let prompt = self.tokenize(&loaded.model, &entry, &request.prompt)?;
        let context_length = context_length(&loaded, &entry);
        let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        // One token of room is needed to generate anything at all.
        if prompt_tokens >= context_length {
            return Err(LlmError::PromptTooLong {
                model: entry.info.name.clone(),
                prompt_tokens,
                context_length,
            });
        }
        let max_tokens = request
            .sampling
            .max_tokens
            .min(context_length - prompt_tokens);
        // The context holds just this request: a small KV cache for short jobs.
        let n_ctx = prompt_tokens + max_tokens;
        let mut ctx = new_context(&loaded, n_ctx, threads, false)?;
        let mut batch = LlamaBatch::new(BATCH, 1);
        let mut pos: i32 = 0;
        let mut out = Output::new(&request.sampling.stop, tokens);
        let model_name = entry.info.name.clone();
        let done = |out: Output, finish_reason, completion_tokens| Completion {
            model: model_name.clone(),
            text: out.finish(),
            finish_reason,
            prompt_tokens,
            completion_tokens,
        };
        let chunks = prompt.len().div_ceil(BATCH);
        for (i, chunk) in prompt.chunks(BATCH).enumerate() {
            if let Some(why) = halt.reason() {
                return Ok(done(out, why, 0));
            }
            batch.clear();
            for (j, t) in chunk.iter().enumerate() {
                // Only the prompt's last token needs logits: the first sample comes from it.
                let last = i + 1 == chunks && j + 1 == chunk.len();
                batch
                    .add(*t, pos, &[0], last)
                    .map_err(|e| LlmError::Inference(e.to_string()))?;
                pos += 1;
            }
            ctx.decode(&mut batch)
                .map_err(|e| LlmError::Inference(format!("reading the prompt: {e}")))?;
        }
        let mut sampler = sampler(&request.sampling);
        let vocab = loaded.model.vocab();
        let mut generated: u32 = 0;
        let mut piece = Vec::with_capacity(32);
        loop {
            if let Some(why) = halt.reason() {
                return Ok(done(out, why, generated));
            }
            let token = sampler.sample(&ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                return Ok(done(out, FinishReason::Stop, generated));
            }
            generated += 1;
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            if out.push_bytes(&piece) {
                return Ok(done(out, FinishReason::Stop, generated));
            }
            if generated >= max_tokens {
                return Ok(done(out, FinishReason::Length, generated));
            }
            batch.clear();
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| LlmError::Inference(e.to_string()))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| LlmError::Inference(format!("generating: {e}")))?;
        }
    }

    /// Embeds each input (blocking): the mean of the last layer's token
    /// states, L2-normalised, as Ollama returns them.
    pub fn embed_blocking(
        &self,
        model: &str,
        inputs: &[String],
        threads: u32,
        halt: &Halt,
    ) -> Result<Embeddings, LlmError> {
        let entry = self.entry(model)?;
        let loaded = self.load(&entry)?;
        let context_length = context_length(&loaded, &entry);
        let vocab = loaded.model.vocab();
        let tokenized: Vec<Vec<LlamaToken>> = inputs
            .iter()
            .map(|s| vocab.tokenize(s.as_bytes(), true, false))
            .collect();
        let longest = tokenized.iter().map(Vec::len).max().unwrap_or(0);
        let longest_u32 = u32::try_from(longest).unwrap_or(u32::MAX);
        if longest_u32 > context_length {
            return Err(LlmError::PromptTooLong {
                model: entry.info.name.clone(),
                prompt_tokens: longest_u32,
                context_length,
            });
        }
        let mut ctx = new_context(&loaded, longest_u32.max(1), threads, true)?;
        let mut batch = LlamaBatch::new(longest.max(1), 1);
        let mut embeddings = Vec::with_capacity(inputs.len());
        let mut prompt_tokens: u32 = 0;
        for tokens in &tokenized {
            if let Some(why) = halt.reason() {
                return Err(LlmError::Inference(format!("stopped: {why:?}")));
            }
            ctx.clear_kv_cache();
            batch.clear();
            for (i, t) in tokens.iter().enumerate() {
                let pos = i32::try_from(i).unwrap_or(i32::MAX);
                batch
                    .add(*t, pos, &[0], true)
                    .map_err(|e| LlmError::Inference(e.to_string()))?;
            }
            if tokens.is_empty() {
                embeddings.push(vec![
                    0.0;
                    usize::try_from(loaded.model.n_embd()).unwrap_or(0)
                ]);
                continue;
            }
            ctx.decode(&mut batch)
                .map_err(|e| LlmError::Inference(e.to_string()))?;
            let v = ctx
                .embeddings_seq_ith(0)
                .map_err(|e| LlmError::Inference(e.to_string()))?;
            embeddings.push(normalize(v));
            prompt_tokens =
                prompt_tokens.saturating_add(u32::try_from(tokens.len()).unwrap_or(u32::MAX));
        }
        Ok(Embeddings {
            model: entry.info.name,
            embeddings,
            prompt_tokens,
        })
    }
}

/// Throughput of the embedded backend, measured as llama-bench measures
/// llama.cpp's: see [`EmbeddedBackend::benchmark`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// Prompt tokens read per second (one batch of `prompt_tokens`).
    pub prompt_per_s: f64,
    /// Tokens generated per second, one at a time.
    pub generation_per_s: f64,
}

impl EmbeddedBackend {
    /// Measures one run like llama-bench's `pp` and `tg` tests, so the two
    /// compare: `prompt_tokens` decoded as one batch into an empty context,
    /// then, from an empty context again, `gen_tokens` decoded one at a time.
    /// Unlike llama-bench, each generated token goes through this backend's
    /// real per-token path (sampler chain, detokenizing, text assembly), so
    /// the figure includes what a job pays; the model ending its answer is
    /// ignored, as llama-bench ignores it.
    pub fn benchmark(
        &self,
        model: &str,
        prompt_tokens: u32,
        gen_tokens: u32,
        threads: u32,
    ) -> Result<Throughput, LlmError> {
        let entry = self.entry(model)?;
        let loaded = self.load(&entry)?;
        let vocab = loaded.model.vocab();
        let n_vocab = u32::try_from(vocab.n_tokens()).unwrap_or(1).max(1);
        let mut ctx = new_context(
            &loaded,
            prompt_tokens.max(gen_tokens).max(1),
            threads,
            false,
        )?;
        // Pseudo-random prompt tokens, as llama-bench uses.
        let mut x: u32 = 0x9e37_79b9;
        let prompt: Vec<LlamaToken> = (0..prompt_tokens)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                LlamaToken::new(i32::try_from(x % n_vocab).unwrap_or(0))
            })
            .collect();
        let mut batch = LlamaBatch::new(BATCH.max(prompt.len()), 1);
        let err = |e: &dyn std::fmt::Display| LlmError::Inference(e.to_string());
        let started = std::time::Instant::now();
        for chunk in prompt.chunks(BATCH) {
            batch.clear();
            for t in chunk {
                let pos = batch.n_tokens();
                batch.add(*t, pos, &[0], false).map_err(|e| err(&e))?;
            }
            ctx.decode(&mut batch).map_err(|e| err(&e))?;
        }
        let pp = started.elapsed().as_secs_f64();

        ctx.clear_kv_cache();
        let mut sampler = sampler(&Sampling {
            seed: Some(1),
            ..Sampling::default()
        });
        let mut out = Output::new(&[], TokenSink::discard());
        let mut piece = Vec::with_capacity(32);
        let mut token = vocab.bos();
        let started = std::time::Instant::now();
        for pos in 0..i32::try_from(gen_tokens).unwrap_or(i32::MAX) {
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(|e| err(&e))?;
            ctx.decode(&mut batch).map_err(|e| err(&e))?;
            token = sampler.sample(&ctx, 0);
            if vocab.is_eog(token) {
                token = vocab.bos();
            }
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            out.push_bytes(&piece);
        }
        let tg = started.elapsed().as_secs_f64();
        Ok(Throughput {
            prompt_per_s: f64::from(prompt_tokens) / pp.max(f64::EPSILON),
            generation_per_s: f64::from(gen_tokens) / tg.max(f64::EPSILON),
        })
    }
}

/// Renders messages with the model's chat template; llama.cpp knows the
/// common templates by their markers, and ChatML stands in for the rest.
fn render_chat(
    model: &LlamaModel,
    entry: &Entry,
    messages: &[ChatMessage],
) -> Result<String, LlmError> {
    let chat: Vec<LlamaChatMessage> = messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect::<Result<_, _>>()
        .map_err(|_| LlmError::InvalidParams("messages must not contain NUL characters".into()))?;
    let own = entry
        .summary
        .chat_template
        .as_ref()
        .and_then(|_| model.chat_template(None).ok())
        .and_then(|t| model.apply_chat_template(&t, &chat, true).ok());
    if let Some(text) = own {
        return Ok(text);
    }
    let fallback = LlamaChatTemplate::new(FALLBACK_TEMPLATE)
        .map_err(|e| LlmError::Inference(e.to_string()))?;
    model
        .apply_chat_template(&fallback, &chat, true)
        .map_err(|e| LlmError::Inference(format!("applying the chat template: {e}")))
}

/// The context the model was trained for, as the header says, else as llama.cpp says.
fn context_length(loaded: &Loaded, entry: &Entry) -> u32 {
    if entry.info.context_length > 0 {
        entry.info.context_length
    } else {
        loaded.model.n_ctx_train()
    }
}

fn new_context<'m>(
    loaded: &'m Loaded,
    n_ctx: u32,
    threads: u32,
    embeddings: bool,
) -> Result<LlamaContext<'m>, LlmError> {
    let threads = i32::try_from(threads.max(1)).unwrap_or(1);
    let batch = if embeddings {
        n_ctx
    } else {
        n_ctx.min(BATCH as u32)
    };
    let mut params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx.max(1)))
        .with_n_batch(batch)
        .with_n_ubatch(batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    if embeddings {
        params = params
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean);
    }
    let _one_at_a_time = loaded
        .new_context
        .lock()
        .map_err(|_| LlmError::Unavailable("model lock poisoned".into()))?;
    loaded
        .model
        .new_context(llama()?, params)
        .map_err(|e| LlmError::Inference(format!("creating a context of {n_ctx} tokens: {e}")))
}

/// llama.cpp's usual chain: top-k, top-p, temperature, then a seeded draw;
/// temperature 0 takes the most likely token.
fn sampler(s: &Sampling) -> LlamaSampler {
    if s.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    let seed = s.seed.unwrap_or_else(|| {
        // No seed asked: a fresh one per request (RandomState is randomly keyed).
        RandomState::new().hash_one(std::time::SystemTime::now()) as u32
    });
    let mut chain = Vec::with_capacity(4);
    if s.top_k > 0 {
        chain.push(LlamaSampler::top_k(
            i32::try_from(s.top_k).unwrap_or(i32::MAX),
        ));
    }
    if s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    chain.push(LlamaSampler::temp(s.temperature));
    chain.push(LlamaSampler::dist(seed));
    LlamaSampler::chain_simple(chain)
}

fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// A model's name: its file name without `.gguf`.
fn model_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl LlmBackend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.state
            .entries
            .read()
            .map(|e| e.iter().map(|e| e.info.clone()).collect())
            .unwrap_or_default()
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), LlmError>> {
        let this = self.clone();
        Box::pin(async move {
            // Reads every file's GGUF header: off the async threads.
            tokio::task::spawn_blocking(move || this.rescan())
                .await
                .map_err(|e| LlmError::Unavailable(format!("the model scan failed: {e}")))
        })
    }

    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<Option<u32>, LlmError> {
        let entry = self.entry(&request.model)?;
        // Never the weights here: this runs when a provider decides whether
        // to bid, on the node's event loop.
        let n = match self.cached(&entry.info.name) {
            Some(loaded) => self.tokenize(&loaded.model, &entry, &request.prompt)?,
            None => self.tokenize(self.vocab(&entry)?.as_ref(), &entry, &request.prompt)?,
        }
        .len();
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }

    fn generate<'a>(
        &'a self,
        request: GenerateRequest,
        threads: u32,
        tokens: TokenSink,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                this.generate_blocking(&request, threads, tokens, &halt)
            })
            .await
            .map_err(|e| LlmError::Inference(format!("the inference thread failed: {e}")))?
        })
    }

    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: Vec<String>,
        threads: u32,
        halt: Halt,
    ) -> BoxFuture<'a, Result<Embeddings, LlmError>> {
        let this = self.clone();
        let model = model.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                this.embed_blocking(&model, &inputs, threads, &halt)
            })
            .await
            .map_err(|e| LlmError::Inference(format!("the inference thread failed: {e}")))?
        })
    }
}
