//! The llm adapter: the embedded backend running the real SmolLM2-135M-Instruct
//! (Q4_1) model, and the Ollama backend against an in-test HTTP server that
//! replays the response shapes Ollama documents (a real Ollama cannot be
//! installed here; the node's own Ollama-compatible endpoint will be the
//! real counterpart).
//!
//! The model comes from `scripts/fetch-test-model.sh`; the tests fail, never
//! skip, without it.

use modchain_adapters::llm::embedded::{EmbeddedBackend, EmbeddedConfig};
use modchain_adapters::llm::ollama::OllamaBackend;
use modchain_adapters::llm::{
    ChatMessage, Completion, FinishReason, GenerateRequest, Halt, LlmAdapter, LlmBackend, LlmError,
    Prompt, RESULT_FILE, Sampling, TokenSink,
};
use modchain_adapters::testing::{LLM_TEST_MODEL as MODEL, llm_test_model as model_path};
use modchain_adapters::{Adapter, AdapterError, ExecutionContext, Limits, LogSink, LogStream};
use modchain_protocol::{Digest, ExecutionReport, ExitStatus};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One adapter for the whole test binary: the model loads once.
fn adapter() -> &'static LlmAdapter {
    static ADAPTER: OnceLock<LlmAdapter> = OnceLock::new();
    ADAPTER.get_or_init(|| {
        let backend = EmbeddedBackend::new(EmbeddedConfig::new(None, vec![model_path()]));
        assert_eq!(backend.problems(), Vec::<String>::new());
        LlmAdapter::new(vec![Arc::new(backend) as Arc<dyn LlmBackend>])
    })
}

/// One thread per inference: the tests run in parallel on small machines, and
/// llama.cpp's threads spin-wait for each other, which oversubscription punishes.
fn ctx(name: &str, timeout: Duration, logs: LogSink) -> ExecutionContext {
    let dir = std::env::temp_dir().join(format!("modchain-llm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ExecutionContext {
        job_id: Digest::of(name.as_bytes()),
        limits: Limits {
            cores: 1,
            ..Limits::default()
        },
        timeout,
        cancel: CancellationToken::new(),
        output_dir: dir,
        logs,
    }
}

fn completion_of(report: &ExecutionReport) -> Completion {
    let file = report
        .outputs
        .iter()
        .find(|o| o.name == RESULT_FILE)
        .expect("result.json among the outputs");
    let bytes = file.inline.as_ref().expect("result.json inline");
    serde_json::from_slice(bytes).expect("result.json is a Completion")
}

fn ask(prompt: &str, sampling: Sampling) -> GenerateRequest {
    GenerateRequest {
        model: MODEL.into(),
        prompt: Prompt::Text {
            prompt: prompt.into(),
            system: None,
            raw: false,
        },
        sampling,
        via: Vec::new(),
    }
}

fn raw(prompt: &str, sampling: Sampling) -> GenerateRequest {
    GenerateRequest {
        model: MODEL.into(),
        prompt: Prompt::Text {
            prompt: prompt.into(),
            system: None,
            raw: true,
        },
        sampling,
        via: Vec::new(),
    }
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        temperature: 0.0,
        max_tokens,
        ..Sampling::default()
    }
}

async fn generate(req: GenerateRequest) -> Completion {
    adapter()
        .generate(req, 1, TokenSink::discard(), Halt::never())
        .await
        .expect("generates")
}

#[test]
fn the_advert_lists_the_model_from_its_header() {
    let models = adapter().models();
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(m.name, MODEL);
    assert_eq!(m.quantization, "Q4_1");
    assert_eq!(m.context_length, 8192);
    // llama-bench prints 134.52 M for this file.
    assert!(
        (134_000_000..135_000_000).contains(&m.parameters),
        "{}",
        m.parameters
    );
    let info = adapter().info();
    assert_eq!(info.name, "llm");
    assert_eq!(
        info.methods,
        vec!["generate", "chat", "embed", "list_models"]
    );
    assert_eq!(info.models, models);
}

#[test]
fn a_models_directory_is_scanned_and_bad_files_are_reported() {
    let dir = std::env::temp_dir().join(format!("modchain-llm-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::os::unix::fs::symlink(model_path(), dir.join("tiny.gguf")).expect("symlink");
    std::fs::write(dir.join("broken.gguf"), b"not a model").expect("write");
    std::fs::write(dir.join("notes.txt"), b"ignored").expect("write");
    let b = EmbeddedBackend::new(EmbeddedConfig::new(Some(dir.clone()), Vec::new()));
    let names: Vec<String> = b.models().into_iter().map(|m| m.name).collect();
    assert_eq!(names, vec!["tiny"]);
    let problems = b.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("broken.gguf") && problems[0].contains("not a GGUF file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_seeded_generation_is_deterministic_and_knows_paris() {
    let sampling = Sampling {
        temperature: 0.3,
        seed: Some(42),
        max_tokens: 48,
        ..Sampling::default()
    };
    let a = generate(ask("What is the capital of France?", sampling.clone())).await;
    let b = generate(ask("What is the capital of France?", sampling)).await;
    assert_eq!(a.text, b.text);
    assert_eq!(a.completion_tokens, b.completion_tokens);
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    let g = generate(ask("What is the capital of France?", greedy(48))).await;
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[tokio::test]
async fn different_seeds_can_differ() {
    let mut texts = std::collections::BTreeSet::new();
    for seed in 1..=4 {
        let s = Sampling {
            temperature: 1.0,
            seed: Some(seed),
            max_tokens: 24,
            ..Sampling::default()
        };
        texts.insert(generate(ask("Tell me a story.", s)).await.text);
    }
    assert!(texts.len() > 1, "four seeds gave one text: {texts:?}");
}

#[tokio::test]
async fn chat_goes_through_the_chat_template() {
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: "Answer in one short sentence.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "What is the capital of France?".into(),
        },
    ];
    let req = GenerateRequest {
        model: MODEL.into(),
        prompt: Prompt::Chat(messages.clone()),
        sampling: greedy(96),
        via: Vec::new(),
    };
    let c = generate(req.clone()).await;
    assert!(c.text.contains("Paris"), "{:?}", c.text);
    // The template's markers were read as single control tokens: the chat
    // costs a handful of tokens more than its raw ChatML text would as plain text.
    let chatml = format!(
        "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        messages[0].content, messages[1].content
    );
    let as_raw = adapter()
        .prompt_tokens(&raw(&chatml, greedy(1)))
        .expect("counts")
        .expect("embedded counts tokens");
    assert_eq!(c.prompt_tokens, as_raw);
    // The model's answer ends with its end-of-turn token, not with max_tokens.
    assert_eq!(c.finish_reason, FinishReason::Stop, "{:?}", c.text);
    assert!(!c.text.contains("<|im_end|>"));

    // Earlier turns reach the model.
    let turn = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    let params = json!({"model": MODEL, "options": {"temperature": 0, "max_tokens": 64},
        "messages": [turn("user", "Hi, my name is Ada."),
                     turn("assistant", "Hello Ada! How can I help you today?"),
                     turn("user", "What is my name?")]});
    let report = adapter()
        .execute(
            ctx("chat", Duration::from_secs(60), LogSink::discard()),
            "chat",
            &params,
        )
        .await
        .expect("runs");
    let c = completion_of(&report);
    assert!(c.text.contains("Ada"), "{:?}", c.text);
}

#[tokio::test]
async fn token_counts_are_right() {
    // "Hello world" is two tokens for SmolLM2's tokenizer, which adds no BOS.
    let c = generate(raw("Hello world", greedy(12))).await;
    assert_eq!(c.prompt_tokens, 2, "{c:?}");
    assert_eq!(c.completion_tokens, 12);
    assert_eq!(c.finish_reason, FinishReason::Length);
    // Through the adapter, the report's usage carries the generated tokens.
    let a = adapter();
    let params = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "raw": true,
                        "options": {"temperature": 0, "max_tokens": 10}});
    let report = a
        .execute(
            ctx("counts", Duration::from_secs(60), LogSink::discard()),
            "generate",
            &params,
        )
        .await
        .expect("runs");
    let c = completion_of(&report);
    assert_eq!(report.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(c.completion_tokens, 10);
    assert_eq!(report.usage.tokens, 10);
    // SmolLM2 splits digits from spaces: `1` `,` ` ` `2` `,` ` ` `3` `,` ` ` `4` `,`.
    assert_eq!(c.prompt_tokens, 11);
    assert_eq!(report.stdout, c.text.as_bytes());
}

/// A provider counts a prompt's tokens when it decides whether to bid, on
/// the node's event loop: that must not load the model's weights (seconds
/// for a large model), and must count what the generation then sees.
#[tokio::test]
async fn counting_a_prompt_loads_no_weights() {
    let backend = EmbeddedBackend::new(EmbeddedConfig::new(None, vec![model_path()]));
    let request = ask("What is the capital of France?", greedy(1));
    let counted = backend
        .count_prompt_tokens(&request)
        .expect("counts")
        .expect("the embedded backend can count");
    assert!(
        backend.loaded_models().is_empty(),
        "counting loaded the weights: {:?}",
        backend.loaded_models()
    );
    let c = backend
        .generate(request, 1, TokenSink::new(|_| {}), Halt::never())
        .await
        .expect("generates");
    assert_eq!(backend.loaded_models(), vec![MODEL.to_string()]);
    assert_eq!(
        c.prompt_tokens, counted,
        "the chat template rendered the same"
    );
}

#[tokio::test]
async fn tokens_stream_before_the_end() {
    let (sink, mut lines) = LogSink::new();
    let params = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "raw": true,
                        "options": {"temperature": 0, "max_tokens": 96}});
    let job = tokio::spawn(async move {
        adapter()
            .execute(
                ctx("stream", Duration::from_secs(60), sink),
                "generate",
                &params,
            )
            .await
    });
    let first = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("a token within 30 s")
        .expect("a line");
    assert_eq!(first.stream, LogStream::Stdout);
    assert!(!job.is_finished(), "the first token came only at the end");
    let report = job.await.expect("joined").expect("ran");
    let mut streamed = first.data;
    let mut pieces = 1;
    while let Ok(l) = lines.try_recv() {
        streamed.extend_from_slice(&l.data);
        pieces += 1;
    }
    assert!(pieces > 10, "{pieces} pieces");
    assert_eq!(streamed, report.stdout);
    assert_eq!(completion_of(&report).text.as_bytes(), streamed.as_slice());
}

#[tokio::test]
async fn a_stop_string_ends_the_text_before_it() {
    let mut s = greedy(64);
    s.stop = vec![" 8".into()];
    let c = generate(raw("1, 2, 3, 4,", s)).await;
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(c.text, " 5, 6, 7,");
}

#[test]
fn an_unknown_model_is_refused_with_the_list_of_models() {
    let err = adapter()
        .validate("generate", &json!({"model": "llama9:70b", "prompt": "hi"}))
        .expect_err("refused");
    let msg = err.to_string();
    assert!(matches!(err, AdapterError::InvalidParams(_)));
    assert!(
        msg.contains("unknown model `llama9:70b`") && msg.contains(MODEL),
        "{msg}"
    );
    let err = adapter()
        .validate("embed", &json!({"model": "nope", "input": "x"}))
        .expect_err("refused");
    assert!(err.to_string().contains(MODEL));
}

#[tokio::test]
async fn a_prompt_over_the_context_length_is_refused_with_both_numbers() {
    let long = vec!["hello"; 9000].join(" ");
    let params = json!({"model": MODEL, "prompt": long, "raw": true});
    let err = adapter()
        .validate("generate", &params)
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("9000 tokens") && msg.contains("8192 tokens"),
        "{msg}"
    );
    // The run refuses it too, before anything streams.
    let err = adapter()
        .execute(
            ctx("long", Duration::from_secs(60), LogSink::discard()),
            "generate",
            &params,
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("8192"));
}

#[test]
fn bad_parameters_are_refused_clearly() {
    let a = adapter();
    let cases = [
        ("generate", json!({"model": MODEL}), "prompt"),
        (
            "generate",
            json!({"model": MODEL, "prompt": "x", "temprature": 1}),
            "temprature",
        ),
        (
            "generate",
            json!({"model": MODEL, "prompt": "x", "options": {"temperature": 3.0}}),
            "temperature",
        ),
        (
            "generate",
            json!({"model": MODEL, "prompt": "x", "options": {"top_p": 0}}),
            "top_p",
        ),
        (
            "generate",
            json!({"model": MODEL, "prompt": "x", "options": {"max_tokens": 0}}),
            "max_tokens",
        ),
        (
            "generate",
            json!({"model": MODEL, "prompt": "x", "options": {"stop": [""]}}),
            "stop",
        ),
        (
            "chat",
            json!({"model": MODEL, "messages": []}),
            "at least one",
        ),
        (
            "chat",
            json!({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}),
            "robot",
        ),
        ("embed", json!({"model": MODEL, "input": []}), "input"),
        ("list_models", json!({"verbose": true}), "verbose"),
    ];
    for (method, params, needle) in cases {
        let err = a.validate(method, &params).expect_err("refused");
        assert!(err.to_string().contains(needle), "{method} {params}: {err}");
    }
    let err = a.validate("complete", &json!({})).expect_err("refused");
    assert!(
        err.to_string()
            .contains("generate, chat, embed, list_models")
    );
    for m in a.methods() {
        assert_eq!(m.params_schema["type"], "object", "{}", m.name);
    }
}

#[tokio::test]
async fn cancelling_stops_generation_between_tokens() {
    let (sink, mut lines) = LogSink::new();
    let c = ctx("cancel", Duration::from_secs(120), sink);
    let cancel = c.cancel.clone();
    let params = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "raw": true,
                        "options": {"temperature": 0, "max_tokens": 4000}});
    let job = tokio::spawn(async move { adapter().execute(c, "generate", &params).await });
    lines.recv().await.expect("a first token");
    let at = Instant::now();
    cancel.cancel();
    let report = job.await.expect("joined").expect("ran");
    assert!(at.elapsed() < Duration::from_secs(2), "{:?}", at.elapsed());
    assert_eq!(report.exit, Some(ExitStatus::Cancelled));
    let c = completion_of(&report);
    assert_eq!(c.finish_reason, FinishReason::Cancelled);
    assert!(c.completion_tokens > 0 && c.completion_tokens < 4000);
}

#[tokio::test]
async fn the_deadline_stops_generation() {
    let params = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "raw": true,
                        "options": {"temperature": 0, "max_tokens": 4000}});
    let started = Instant::now();
    let report = adapter()
        .execute(
            ctx("deadline", Duration::from_millis(400), LogSink::discard()),
            "generate",
            &params,
        )
        .await
        .expect("ran");
    assert_eq!(report.exit, Some(ExitStatus::TimedOut));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn embeddings_are_normalised_vectors_one_per_input() {
    let e = adapter()
        .embed(
            MODEL,
            vec!["Paris is in France.".into(), "Bonjour".into()],
            1,
            Halt::never(),
        )
        .await
        .expect("embeds");
    assert_eq!(e.embeddings.len(), 2);
    for v in &e.embeddings {
        assert_eq!(v.len(), 576, "SmolLM2-135M's hidden size");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_ne!(e.embeddings[0], e.embeddings[1]);
    assert!(e.prompt_tokens > 0);
    let again = adapter()
        .embed(MODEL, vec!["Paris is in France.".into()], 1, Halt::never())
        .await
        .expect("embeds");
    assert_eq!(again.embeddings[0], e.embeddings[0]);
}

#[tokio::test]
async fn list_models_answers_with_the_models() {
    let report = adapter()
        .execute(
            ctx("list", Duration::from_secs(10), LogSink::discard()),
            "list_models",
            &json!({}),
        )
        .await
        .expect("ran");
    let v: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(v["models"][0]["name"], MODEL);
    assert_eq!(v["models"][0]["backend"], "embedded");
    assert_eq!(v["models"][0]["context_length"], 8192);
}

// ---------------------------------------------------------------------------
// Ollama, against a server replaying Ollama's documented response shapes.

mod ollama_replay {
    use super::*;
    use axum::Json;
    use axum::body::Body;
    use axum::routing::{get, post};

    /// What the replay server saw in request bodies, for the assertions.
    type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

    fn ndjson(lines: Vec<serde_json::Value>, gap: Duration) -> Body {
        let stream = futures_util::stream::unfold(lines.into_iter(), move |mut it| async move {
            let line = it.next()?;
            tokio::time::sleep(gap).await;
            Some((Ok::<_, std::convert::Infallible>(format!("{line}\n")), it))
        });
        Body::from_stream(stream)
    }

    async fn serve(seen: Seen) -> String {
        let s1 = seen.clone();
        let s2 = seen.clone();
        let app = axum::Router::new()
            .route(
                "/api/tags",
                get(|| async {
                    Json(json!({"models": [{
                        "name": "smollm2:135m", "model": "smollm2:135m",
                        "modified_at": "2025-01-01T00:00:00Z", "size": 270898672,
                        "digest": "9077fe9d2ae1",
                        "details": {"parent_model": "", "format": "gguf", "family": "llama",
                                    "families": ["llama"], "parameter_size": "134.52M",
                                    "quantization_level": "Q8_0"}
                    }]}))
                }),
            )
            .route(
                "/api/show",
                post(|| async {
                    Json(json!({
                        "modelfile": "FROM smollm2", "parameters": "", "template": "",
                        "details": {"format": "gguf", "family": "llama", "parameter_size": "134.52M",
                                    "quantization_level": "Q8_0"},
                        "model_info": {"general.architecture": "llama",
                                       "general.parameter_count": 134515008u64,
                                       "llama.context_length": 8192}
                    }))
                }),
            )
            .route(
                "/api/generate",
                post(move |Json(body): Json<serde_json::Value>| async move {
                    if let Ok(mut s) = s1.lock() {
                        s.push(body.clone());
                    }
                    let slow = body["prompt"] == "forever";
                    let mut lines: Vec<serde_json::Value> = ["The", " capital", " is", " Paris", "."]
                        .iter()
                        .map(|t| json!({"model": "smollm2:135m", "created_at": "2025-01-01T00:00:00Z",
                                        "response": t, "done": false}))
                        .collect();
                    if slow {
                        lines = (0..10_000)
                            .map(|_| json!({"model": "smollm2:135m", "response": " and", "done": false}))
                            .collect();
                    }
                    lines.push(json!({"model": "smollm2:135m", "created_at": "2025-01-01T00:00:01Z",
                                      "response": "", "done": true, "done_reason": "stop",
                                      "context": [1, 2, 3], "total_duration": 10706818083u64,
                                      "load_duration": 6338219291u64, "prompt_eval_count": 26,
                                      "prompt_eval_duration": 130079000, "eval_count": 5,
                                      "eval_duration": 4232710000u64}));
                    let gap = if slow { Duration::from_millis(50) } else { Duration::from_millis(20) };
                    ndjson(lines, gap)
                }),
            )
            .route(
                "/api/chat",
                post(move |Json(body): Json<serde_json::Value>| async move {
                    if let Ok(mut s) = s2.lock() {
                        s.push(body);
                    }
                    let mut lines: Vec<serde_json::Value> = ["Par", "is"]
                        .iter()
                        .map(|t| json!({"model": "smollm2:135m", "created_at": "2025-01-01T00:00:00Z",
                                        "message": {"role": "assistant", "content": t}, "done": false}))
                        .collect();
                    lines.push(json!({"model": "smollm2:135m", "created_at": "2025-01-01T00:00:01Z",
                                      "message": {"role": "assistant", "content": ""},
                                      "done": true, "done_reason": "length",
                                      "prompt_eval_count": 31, "eval_count": 2}));
                    ndjson(lines, Duration::from_millis(10))
                }),
            )
            .route(
                "/api/embed",
                post(|| async {
                    Json(json!({"model": "smollm2:135m",
                                "embeddings": [[0.6, 0.8], [1.0, 0.0]],
                                "total_duration": 14143917, "load_duration": 1019500,
                                "prompt_eval_count": 8}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    async fn ollama_adapter(seen: Seen) -> LlmAdapter {
        let url = serve(seen).await;
        let b = OllamaBackend::connect(&url).await.expect("connects");
        LlmAdapter::new(vec![Arc::new(b) as Arc<dyn LlmBackend>])
    }

    #[tokio::test]
    async fn the_model_list_comes_from_tags_and_show() {
        let a = ollama_adapter(Seen::default()).await;
        let m = a.models();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "smollm2:135m");
        assert_eq!(m[0].parameters, 134_515_008);
        assert_eq!(m[0].quantization, "Q8_0");
        assert_eq!(m[0].context_length, 8192);
        let err = a
            .validate("generate", &json!({"model": "llama3", "prompt": "x"}))
            .expect_err("unknown");
        assert!(err.to_string().contains("smollm2:135m"));
    }

    #[tokio::test]
    async fn generate_streams_and_carries_ollamas_counts() {
        let seen = Seen::default();
        let a = ollama_adapter(seen.clone()).await;
        let (sink, mut lines) = LogSink::new();
        let params = json!({"model": "smollm2:135m", "prompt": "Capital of France?",
                            "system": "Be brief.",
                            "options": {"temperature": 0.5, "seed": 7, "max_tokens": 20, "stop": ["\n"]}});
        let report = a
            .execute(
                ctx("ollama-gen", Duration::from_secs(10), sink),
                "generate",
                &params,
            )
            .await
            .expect("ran");
        let c = completion_of(&report);
        assert_eq!(c.text, "The capital is Paris.");
        assert_eq!(c.prompt_tokens, 26);
        assert_eq!(c.completion_tokens, 5);
        assert_eq!(report.usage.tokens, 5);
        let mut pieces = Vec::new();
        while let Ok(l) = lines.try_recv() {
            pieces.push(String::from_utf8(l.data).expect("utf-8"));
        }
        assert!(pieces.len() >= 4, "{pieces:?}");
        assert_eq!(pieces.concat(), c.text);
        let body = seen.lock().map(|s| s[0].clone()).expect("request seen");
        assert_eq!(body["stream"], true);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["options"]["seed"], 7);
        assert_eq!(body["options"]["num_predict"], 20);
        assert_eq!(body["options"]["stop"], json!(["\n"]));
    }

    #[tokio::test]
    async fn chat_reads_message_chunks() {
        let seen = Seen::default();
        let a = ollama_adapter(seen.clone()).await;
        let req = GenerateRequest {
            model: "smollm2:135m".into(),
            prompt: Prompt::Chat(vec![ChatMessage {
                role: "user".into(),
                content: "Capital of France?".into(),
            }]),
            sampling: Sampling::default(),
            via: Vec::new(),
        };
        let c = a
            .generate(req, 1, TokenSink::discard(), Halt::never())
            .await
            .expect("chats");
        assert_eq!(c.text, "Paris");
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!((c.prompt_tokens, c.completion_tokens), (31, 2));
        let body = seen.lock().map(|s| s[0].clone()).expect("request seen");
        assert_eq!(body["messages"][0]["content"], "Capital of France?");
    }

    #[tokio::test]
    async fn cancelling_closes_the_stream() {
        let a = ollama_adapter(Seen::default()).await;
        let cancel = CancellationToken::new();
        let got = Arc::new(Mutex::new(String::new()));
        let g = got.clone();
        let sink = TokenSink::new(move |s| {
            if let Ok(mut g) = g.lock() {
                g.push_str(s);
            }
        });
        let halt = Halt::new(cancel.clone(), Duration::from_secs(60));
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c2.cancel();
        });
        let started = Instant::now();
        let c = a
            .generate(raw_for("forever"), 1, sink, halt)
            .await
            .expect("stops cleanly");
        assert_eq!(c.finish_reason, FinishReason::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(c.completion_tokens > 0 && c.completion_tokens < 100);
        assert_eq!(got.lock().map(|g| g.clone()).unwrap_or_default(), c.text);
    }

    fn raw_for(prompt: &str) -> GenerateRequest {
        GenerateRequest {
            model: "smollm2:135m".into(),
            prompt: Prompt::Text {
                prompt: prompt.into(),
                system: None,
                raw: false,
            },
            sampling: Sampling::default(),
            via: Vec::new(),
        }
    }

    #[tokio::test]
    async fn embeddings_come_back_in_order() {
        let a = ollama_adapter(Seen::default()).await;
        let e = a
            .embed(
                "smollm2:135m",
                vec!["a".into(), "b".into()],
                1,
                Halt::never(),
            )
            .await
            .expect("embeds");
        assert_eq!(e.embeddings, vec![vec![0.6, 0.8], vec![1.0, 0.0]]);
        assert_eq!(e.prompt_tokens, 8);
    }

    #[tokio::test]
    async fn an_unreachable_ollama_is_a_clear_error() {
        // Port 9 (discard) on loopback: nothing listens there.
        let err = OllamaBackend::connect("http://127.0.0.1:9")
            .await
            .expect_err("unreachable");
        assert!(matches!(err, LlmError::Unavailable(_)), "{err}");
    }

    /// A provider forwarding to an Ollama-compatible API names itself
    /// after the providers that forwarded the request before it; a server
    /// that answers 508 Loop Detected (a Modchain node of this provider's
    /// own network) leaves it serving none of that server's models.
    #[tokio::test]
    async fn a_forwarding_provider_names_itself_and_drops_a_looping_server() {
        use axum::http::{HeaderMap, StatusCode};
        use std::sync::atomic::{AtomicBool, Ordering};
        type Via = Arc<Mutex<Vec<(String, String)>>>;
        let via: Via = Arc::default();
        let looping = Arc::new(AtomicBool::new(false));
        let header = |h: &HeaderMap| {
            h.get(modchain_adapters::llm::VIA_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (v1, v2, l1) = (via.clone(), via.clone(), looping.clone());
        let app = axum::Router::new()
            .route(
                "/api/tags",
                get(move |h: HeaderMap| async move {
                    if let Ok(mut v) = v1.lock() {
                        v.push(("tags".into(), header(&h)));
                    }
                    if l1.load(Ordering::SeqCst) {
                        return Err((
                            StatusCode::LOOP_DETECTED,
                            Json(json!({"error": "peerB is a peer of this network"})),
                        ));
                    }
                    Ok(Json(
                        json!({"models": [{"name": "smollm2:135m", "model": "smollm2:135m",
                        "details": {"parameter_size": "134.52M", "quantization_level": "Q8_0"}}]}),
                    ))
                }),
            )
            .route(
                "/api/generate",
                post(move |h: HeaderMap| async move {
                    if let Ok(mut v) = v2.lock() {
                        v.push(("generate".into(), header(&h)));
                    }
                    ndjson(
                        vec![
                            json!({"response": "Paris", "done": false}),
                            json!({"response": "", "done": true, "done_reason": "stop",
                                    "prompt_eval_count": 3, "eval_count": 1}),
                        ],
                        Duration::ZERO,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let backend = Arc::new(OllamaBackend::new(&url).expect("url").with_via("peerB"));
        backend.refresh().await.expect("tags");
        let a = LlmAdapter::new(vec![backend.clone() as Arc<dyn LlmBackend>]);
        assert_eq!(a.models().len(), 1);
        let params =
            json!({"model": "smollm2:135m", "prompt": "Capital of France?", "via": ["peerA"]});
        let (sink, _lines) = LogSink::new();
        let report = a
            .execute(
                ctx("ollama-via", Duration::from_secs(10), sink),
                "generate",
                &params,
            )
            .await
            .expect("ran");
        assert_eq!(completion_of(&report).text, "Paris");
        let seen = via.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            vec![
                ("tags".to_string(), "peerB".to_string()),
                ("generate".to_string(), "peerA, peerB".to_string())
            ]
        );

        looping.store(true, Ordering::SeqCst);
        let err = backend.refresh().await.expect_err("a loop");
        assert!(matches!(err, LlmError::Loop(_)), "{err}");
        assert!(
            err.to_string().contains("peerB is a peer of this network"),
            "{err}"
        );
        assert!(
            a.models().is_empty(),
            "the looping server's models are dropped"
        );

        // A request that has passed through too many providers is refused.
        let many: Vec<String> = (0..9).map(|i| format!("peer{i}")).collect();
        let err = a
            .validate(
                "generate",
                &json!({"model": "x", "prompt": "x", "via": many}),
            )
            .expect_err("too many hops");
        assert!(err.to_string().contains("loop"), "{err}");
    }

    /// A client checks a job's shape before submitting it, not whether it
    /// holds the model itself: another provider may.
    #[test]
    fn a_client_checks_the_shape_not_the_model() {
        let a = LlmAdapter::new(Vec::new());
        let elsewhere = json!({"model": "held-elsewhere", "prompt": "hi"});
        a.check_params("generate", &elsewhere).expect("well formed");
        let err = a
            .validate("generate", &elsewhere)
            .expect_err("not held here");
        assert!(err.to_string().contains("held-elsewhere"), "{err}");
        let hot =
            json!({"model": "held-elsewhere", "prompt": "hi", "options": {"temperature": 5.0}});
        assert!(a.check_params("generate", &hot).is_err());
        let chat = json!({"model": "m", "messages": []});
        assert!(a.check_params("chat", &chat).is_err());
    }
}
