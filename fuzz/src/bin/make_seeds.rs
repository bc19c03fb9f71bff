//! Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) with the
//! real encoders, so the seeds stay valid as the formats change:
//!
//! ```text
//! scripts/fuzz --seeds
//! ```
//!
//! Messages come from a small network of protocol peers (a client, an
//! orchestrator, two providers) that runs two jobs: one to the end, with
//! logs, a result, an output fetched and receipts; one cancelled. Every
//! envelope they send is kept as they sent it. Advert syncs and bundles,
//! which the network layer rather than the peers make, are sealed here from
//! the adverts the network published. The config seeds are the node's own
//! template; the GGUF seeds are headers written to the GGUF format.

#[allow(dead_code)]
#[path = "../../../node/src/config.rs"]
mod config;

use modchain_fuzz::{
    BUNDLER, CLIENT, DEAR_PROVIDER, NOW, ORCHESTRATOR, PROVIDER, SEEDS_START, frame, seal,
};
use modchain_protocol::testnet::{test_advert, test_job, test_provider};
use modchain_protocol::{
    Action, AdvertBundle, AdvertSync, Digest, Envelope, ExecutionReport, ExitStatus, JobId,
    Keypair, Kind, KnownAdvert, LogStream, Message, NodeId, OrchestratorConfig, OutputChunk,
    OutputFile, Peer, PeerConfig, Signed, Timestamp, Usage, encode,
};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// At most this many seeds of each kind: a few distinct examples are all
/// libFuzzer needs to start from.
const PER_KIND: usize = 3;

/// The bytes of the output file the finished job reports, fetched in chunks.
const OUTPUT: &[u8] = b"an output file, fetched in chunks by the client\n";

/// The nonce of the job that never finishes.
const HANGS: u64 = 2;

/// The peers of the seed network and what they sent, in order.
struct Net {
    now: Timestamp,
    peers: BTreeMap<NodeId, Peer>,
    inbox: VecDeque<(NodeId, Signed)>,
    sent: Vec<Signed>,
}

impl Net {
    fn new() -> Self {
        Net {
            now: SEEDS_START,
            peers: BTreeMap::new(),
            inbox: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    fn add(&mut self, seed: u64, config: PeerConfig) -> NodeId {
        let mut peer = Peer::new(
            Keypair::from_seed(seed),
            PeerConfig {
                advert: test_advert(),
                ..config
            },
        );
        peer.start(self.now);
        let id = peer.id();
        self.peers.insert(id, peer);
        id
    }

    fn peer(&mut self, id: &NodeId) -> &mut Peer {
        self.peers
            .get_mut(id)
            .unwrap_or_else(|| panic!("no peer {id:?}"))
    }

    /// Carries out every peer's actions and delivers every message, until
    /// nothing is left to do at this instant.
    fn settle(&mut self) {
        loop {
            let mut acted = false;
            let ids: Vec<NodeId> = self.peers.keys().copied().collect();
            for id in ids {
                let now = self.now;
                while let Some(action) = self.peer(&id).poll_action(now) {
                    acted = true;
                    self.act(id, action);
                }
            }
            while let Some((to, message)) = self.inbox.pop_front() {
                acted = true;
                let now = self.now;
                // Off the wire, as a node takes it.
                let _ = self.peer(&to).handle_bytes(now, &message.to_bytes());
            }
            if !acted {
                return;
            }
        }
    }

    fn act(&mut self, from: NodeId, action: Action) {
        let now = self.now;
        match action {
            Action::Send { to, message } => {
                self.sent.push(message.clone());
                self.inbox.push_back((to, message));
            }
            Action::Publish { message, .. } => {
                self.sent.push(message.clone());
                for to in self.peers.keys().filter(|p| **p != from) {
                    self.inbox.push_back((*to, message.clone()));
                }
            }
            // The second job hangs, so that its client cancels it.
            Action::Execute(exec) if exec.spec.nonce == HANGS => {}
            Action::Execute(exec) => {
                let peer = self.peer(&from);
                peer.log_output(now, exec.job_id, LogStream::Stdout, b"hello from the job\n");
                peer.log_output(now, exec.job_id, LogStream::Stderr, b"a warning\n");
                let report = ExecutionReport {
                    exit: Some(ExitStatus::Exited(0)),
                    stdout: b"hello from the job\n".to_vec(),
                    stderr: b"a warning\n".to_vec(),
                    outputs: vec![
                        OutputFile {
                            name: "small.txt".into(),
                            size: 3,
                            digest: Digest::of(b"hi\n"),
                            inline: Some(b"hi\n".to_vec()),
                        },
                        OutputFile {
                            name: "out/large.bin".into(),
                            size: OUTPUT.len() as u64,
                            digest: Digest::of(OUTPUT),
                            inline: None,
                        },
                    ],
                    usage: Usage::default(),
                };
                peer.execution_finished(now, exec.job_id, report);
            }
            Action::Stop { job_id, .. } => {
                self.peer(&from)
                    .execution_finished(now, job_id, ExecutionReport::default());
            }
            Action::ServeOutput { to, request } => {
                // What the node does with the request: the chunk of the file.
                let start = usize::try_from(request.offset)
                    .unwrap_or(usize::MAX)
                    .min(OUTPUT.len());
                let end = start
                    .saturating_add(request.length as usize)
                    .min(OUTPUT.len());
                let chunk = OutputChunk {
                    job_id: request.job_id,
                    digest: request.digest,
                    offset: request.offset,
                    total_size: OUTPUT.len() as u64,
                    data: OUTPUT[start..end].to_vec(),
                };
                let message = Envelope::seal(self.peer(&from).key(), now, Message::Chunk(chunk));
                self.sent.push(message.clone());
                self.inbox.push_back((to, message));
            }
            Action::StoreReceipt(_) | Action::Notify(_) => {}
        }
    }

    /// Runs the peers' timers up to `until`, settling after each.
    fn run_until(&mut self, until: Timestamp) {
        self.settle();
        while let Some(t) = self
            .peers
            .values()
            .filter_map(Peer::poll_timeout)
            .min()
            .filter(|t| *t <= until)
        {
            self.now = self.now.max(t);
            let now = self.now;
            for peer in self.peers.values_mut() {
                if peer.poll_timeout().is_some_and(|t| t <= now) {
                    peer.handle_timeout(now);
                }
            }
            self.settle();
        }
        self.now = self.now.max(until);
    }
}

/// Runs the seed network and returns every envelope it sent.
fn network_messages() -> Vec<Signed> {
    let mut net = Net::new();
    let client = net.add(CLIENT, PeerConfig::default());
    net.add(
        ORCHESTRATOR,
        PeerConfig {
            orchestrator: Some(OrchestratorConfig::default()),
            ..PeerConfig::default()
        },
    );
    net.add(
        PROVIDER,
        PeerConfig {
            provider: Some(test_provider(100)),
            ..PeerConfig::default()
        },
    );
    // Ten credits a core-second: over any test job's price, so it declines.
    net.add(
        DEAR_PROVIDER,
        PeerConfig {
            provider: Some(test_provider(10_000_000)),
            ..PeerConfig::default()
        },
    );
    net.settle();
    net.run_until(net.now.plus(1_000));

    let now = net.now;
    let done: JobId = net
        .peer(&client)
        .submit(now, test_job(now, 1))
        .unwrap_or_else(|e| panic!("the seed network refused a job: {e}"));
    net.run_until(net.now.plus(10_000));
    let now = net.now;
    let digest = Digest::of(OUTPUT);
    for offset in [0, 16] {
        net.peer(&client).fetch_output(now, &done, &digest, offset);
        net.settle();
    }

    let now = net.now;
    let cancelled = net
        .peer(&client)
        .submit(now, test_job(now, HANGS))
        .unwrap_or_else(|e| panic!("the seed network refused a job: {e}"));
    net.run_until(net.now.plus(50));
    let now = net.now;
    net.peer(&client).cancel(now, &cancelled, "changed my mind");
    net.run_until(net.now.plus(5_000));
    assert!(
        net.now < NOW,
        "the seed network ran past the targets' clock"
    );
    net.sent
}

/// The advert syncs and bundles a driver sends, sealed by [`BUNDLER`].
fn sync_messages(adverts: &[Signed]) -> Vec<Signed> {
    let known: Vec<KnownAdvert> = adverts
        .iter()
        .filter_map(|s| match s.message() {
            Message::Advert(ad) => Some(KnownAdvert {
                node: s.signer(),
                sequence: ad.sequence,
            }),
            _ => None,
        })
        .collect();
    let at = Timestamp(NOW.0 - 1_000);
    let mut out = vec![
        seal(BUNDLER, at, Message::AdvertSync(AdvertSync::default())),
        seal(BUNDLER, at, Message::AdvertSync(AdvertSync { known })),
    ];
    for bundle in AdvertBundle::pack(adverts.iter().map(Signed::to_bytes)) {
        out.push(seal(BUNDLER, at, Message::AdvertBundle(bundle)));
    }
    out
}

/// Bundle payloads for the `advert_bundle` target.
fn bundle_seeds(adverts: &[Signed], other: Option<&Signed>) -> Vec<(String, Vec<u8>)> {
    let bytes: Vec<Vec<u8>> = adverts.iter().map(Signed::to_bytes).collect();
    let mut seeds = vec![
        ("empty".to_string(), encode(&AdvertBundle::default())),
        (
            "one-advert".to_string(),
            encode(&AdvertBundle {
                adverts: bytes.iter().take(1).cloned().collect(),
            }),
        ),
        (
            "every-advert".to_string(),
            encode(&AdvertBundle {
                adverts: bytes.clone(),
            }),
        ),
    ];
    if let Some(other) = other {
        let mut mixed = bytes.clone();
        mixed.insert(0, other.to_bytes());
        mixed.push(b"not an envelope".to_vec());
        seeds.push((
            "adverts-and-others".to_string(),
            encode(&AdvertBundle { adverts: mixed }),
        ));
    }
    seeds
}

fn job_params_seeds() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "wasm-wat",
            r#"{"wat":"(module (func (export \"_start\")))","args":["a","b"],"env":{"KEY":"value"},"stdin":"input\n"}"#,
        ),
        ("wasm-binary", r#"{"wasm_base64":"AGFzbQEAAAA="}"#),
        (
            "docker",
            r#"{"image":"busybox:1.36","cmd":["sh","-c","echo hi > /outputs/x"],"env":{"A":"1"},"network":false,"workdir":"/tmp"}"#,
        ),
        (
            "llm-generate",
            r#"{"model":"qwen2.5:0.5b","prompt":"Why is the sky blue?","system":"Be brief.","raw":false,"options":{"temperature":0.7,"seed":42,"num_predict":64,"stop":["\n\n"]}}"#,
        ),
        (
            "llm-chat",
            r#"{"model":"qwen2.5:0.5b","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \u00e9\ud83d\ude00"}],"via":["ollama"]}"#,
        ),
        ("llm-embed", r#"{"model":"nomic","input":["one","two"]}"#),
        (
            "numbers",
            r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5e300,-2.5E-300,1e999999]}"#,
        ),
        (
            "nested",
            r#"[[[[[[[[[[[[[[[[{"a":null,"b":true}]]]]]]]]]]]]]]]]"#,
        ),
    ]
}

/// A GGUF header writer, after the GGUF specification (llama.cpp's
/// gguf.md): little endian, strings as a u64 length and bytes.
#[derive(Default)]
struct Gguf {
    kvs: Vec<u8>,
    kv_count: u64,
    tensors: Vec<u8>,
    tensor_count: u64,
}

const GGUF_U32: u32 = 4;
const GGUF_I32: u32 = 5;
const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;
const GGUF_U64: u32 = 10;
const GGUF_F32: u32 = 6;

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Gguf {
    fn key(&mut self, key: &str, ty: u32) -> &mut Vec<u8> {
        self.kv_count += 1;
        gguf_string(&mut self.kvs, key);
        self.kvs.extend_from_slice(&ty.to_le_bytes());
        &mut self.kvs
    }
    fn string(&mut self, key: &str, value: &str) -> &mut Self {
        gguf_string(self.key(key, GGUF_STRING), value);
        self
    }
    fn u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.key(key, GGUF_U32)
            .extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key, GGUF_U64)
            .extend_from_slice(&value.to_le_bytes());
        self
    }
    fn f32(&mut self, key: &str, value: f32) -> &mut Self {
        self.key(key, GGUF_F32)
            .extend_from_slice(&value.to_le_bytes());
        self
    }
    fn strings(&mut self, key: &str, values: &[&str]) -> &mut Self {
        let out = self.key(key, GGUF_ARRAY);
        out.extend_from_slice(&GGUF_STRING.to_le_bytes());
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        for v in values {
            gguf_string(out, v);
        }
        self
    }
    fn i32s(&mut self, key: &str, values: &[i32]) -> &mut Self {
        let out = self.key(key, GGUF_ARRAY);
        out.extend_from_slice(&GGUF_I32.to_le_bytes());
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32) -> &mut Self {
        self.tensor_count += 1;
        gguf_string(&mut self.tensors, name);
        self.tensors
            .extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.tensors.extend_from_slice(&d.to_le_bytes());
        }
        self.tensors.extend_from_slice(&ty.to_le_bytes());
        self.tensors.extend_from_slice(&0u64.to_le_bytes());
        self
    }
    fn bytes(&self, version: u32) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&self.tensor_count.to_le_bytes());
        out.extend_from_slice(&self.kv_count.to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.tensors);
        out
    }
}

fn gguf_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let chat = Gguf::default()
        .string("general.architecture", "llama")
        .string("general.name", "Tiny Llama")
        .u32("general.file_type", 15)
        .u32("llama.context_length", 4096)
        .f32("llama.rope.freq_base", 10000.0)
        .string(
            "tokenizer.chat_template",
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
        )
        .strings("tokenizer.ggml.tokens", &["<s>", "</s>", "hello", "\u{e9}"])
        .i32s("tokenizer.ggml.token_type", &[3, 3, 1, 1])
        .tensor("token_embd.weight", &[64, 4], 12)
        .tensor("output.weight", &[64, 4], 14)
        .bytes(3);
    // An embedding model that says its architecture last and its file type
    // not at all: the quantization comes from the tensors.
    let embed = Gguf::default()
        .u64("bert.context_length", 512)
        .u32("bert.pooling_type", 1)
        .string("general.architecture", "bert")
        .tensor("token_embd.weight", &[32, 8], 1)
        .tensor("blk.0.attn_q.weight", &[32, 32], 1)
        .tensor("blk.0.attn_q.bias", &[32], 0)
        .bytes(2);
    vec![("chat-model-v3", chat), ("embedding-model-v2", embed)]
}

fn config_seeds() -> Vec<(&'static str, String)> {
    let peer = Keypair::from_seed(9).peer_id();
    vec![
        ("template", config::commented_template()),
        (
            "full",
            format!(
                r#"listen = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/udp/4001/quic-v1"]
bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/{peer}", "/dns4/boot.example/udp/4001/quic-v1/p2p/{peer}"]
api = "[::1]:7777"
orchestrator = true
max_connections = 64
provider = true

[prices]
per_job = 1000
per_core_second = 250
per_gib_memory_second = 10
per_gpu_second = 5000
per_1k_tokens = 20

[advert]
interval_secs = 30
ttl_secs = 120

[docker]
enabled = true
allow_network = false
allowed_images = ["busybox:*", "python:3.12-slim"]
allow_pull = false

[llm]
models = ["/var/lib/models/tiny.gguf"]
ollama_url = "http://127.0.0.1:11434"
ollama_token = "secret"
rescan_seconds = 0
"#
            ),
        ),
        (
            "refused-key",
            "orchestrator = \"yes\"\n[docker]\nenabled = 1\n".to_string(),
        ),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", dir.join(name).display()));
}

fn target_dir(root: &Path, target: &str) -> PathBuf {
    let dir = root.join(target);
    // Start afresh: a seed the formats no longer produce must not linger.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot clear {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".to_string()),
    );
    let sent = network_messages();
    let adverts: Vec<Signed> = sent
        .iter()
        .filter(|s| s.kind() == Kind::Advert)
        .cloned()
        .collect();
    let mut all = sent.clone();
    all.extend(sync_messages(&adverts));

    // A few distinct examples of each kind, in the order they were sent.
    let mut by_kind: BTreeMap<Kind, Vec<Signed>> = BTreeMap::new();
    for s in all {
        let list = by_kind.entry(s.kind()).or_default();
        if list.len() < PER_KIND && !list.iter().any(|l| l.message() == s.message()) {
            list.push(s);
        }
    }
    let missing: Vec<&str> = Kind::ALL
        .iter()
        .filter(|k| !by_kind.contains_key(k))
        .map(|k| k.name())
        .collect();
    assert!(
        missing.is_empty(),
        "the seed network sent no message of kind {missing:?}: change its scenario"
    );

    let envelope = target_dir(&root, "envelope");
    let message = target_dir(&root, "message");
    let frames = target_dir(&root, "frame");
    for (kind, list) in &by_kind {
        let index = Kind::ALL
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("{kind} is not in Kind::ALL"));
        for (i, s) in list.iter().enumerate() {
            let name = format!("{}-{i}", kind.name());
            let bytes = s.to_bytes();
            write(&envelope, &name, &bytes);
            let mut tagged = vec![index as u8];
            tagged.extend_from_slice(&s.envelope().payload);
            write(&message, &name, &tagged);
            let mut direct = vec![0u8];
            direct.extend(frame(&bytes).unwrap_or_else(|e| panic!("cannot frame a {kind}: {e}")));
            write(&frames, &format!("direct-{name}"), &direct);
            if matches!(kind, Kind::Advert | Kind::Receipt) {
                let mut gossip = vec![1u8];
                gossip.extend_from_slice(&bytes);
                write(&frames, &format!("gossip-{name}"), &gossip);
            }
        }
    }
    let mut ack = vec![2u8];
    ack.extend(frame(&[]).unwrap_or_else(|e| panic!("cannot frame an acknowledgement: {e}")));
    write(&frames, "response-ack", &ack);

    let bundles = target_dir(&root, "advert_bundle");
    let other = by_kind.get(&Kind::Receipt).and_then(|l| l.first());
    for (name, bytes) in bundle_seeds(&adverts, other) {
        write(&bundles, &name, &bytes);
    }

    let params = target_dir(&root, "job_params");
    for (name, text) in job_params_seeds() {
        write(&params, name, text.as_bytes());
    }

    let gguf = target_dir(&root, "gguf");
    for (name, bytes) in gguf_seeds() {
        write(&gguf, name, &bytes);
    }

    let configs = target_dir(&root, "config_toml");
    for (name, text) in config_seeds() {
        let parsed = config::Config::parse(&text, Path::new("config.toml"));
        assert_eq!(
            parsed.is_ok(),
            !name.starts_with("refused"),
            "config seed {name}: {parsed:?}"
        );
        write(&configs, name, text.as_bytes());
    }

    let count: usize = by_kind.values().map(Vec::len).sum();
    println!(
        "wrote seeds for 7 targets under {} ({count} messages of {} kinds)",
        root.display(),
        by_kind.len()
    );
}
