//! `config.toml`: every key has a default, flags override it, and a bad file
//! is refused with the key, the line and the form that was expected.

use libp2p::Multiaddr;
use modchain_net::BootstrapAddr;
use modchain_protocol::{Credits, PriceTable};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses the peer listens on.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers: full multiaddrs ending in /p2p/<peer id>.
    pub bootstrap: Vec<String>,
    /// Where the local HTTP API listens (loopback only).
    pub api: SocketAddr,
    /// Host names the API answers to besides its address and `localhost`
    /// (a name in /etc/hosts, a reverse proxy's): any other `Host` is refused.
    pub api_allowed_hosts: Vec<String>,
    /// Stand as an orchestrator candidate.
    pub orchestrator: bool,
    /// Most connections held at once.
    pub max_connections: u32,
    /// Sell this machine's capacity (run jobs won at auction).
    pub provider: bool,
    pub prices: Prices,
    pub advert: AdvertSettings,
    pub docker: DockerSettings,
    pub llm: LlmSettings,
    pub limits: LimitsSettings,
    pub wasm: WasmSettings,
    pub relay: RelaySettings,
}

/// The `[limits]` table: the cap on everything a remote peer (or a job) can
/// make this node hold. The defaults suit a normal node; past a cap the
/// oldest or newest entry is dropped (each key says which) and counted in
/// `/metrics` (`modchain_table_*`, `modchain_dropped`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Most connections other peers opened to us (of `max_connections`).
    pub max_inbound_connections: u32,
    /// Most connections we opened (of `max_connections`).
    pub max_outbound_connections: u32,
    /// Connections one peer may hold to us at once.
    pub connections_per_peer: u32,
    /// Direct-message streams open at once on one connection.
    pub streams_per_connection: usize,
    /// Direct requests one peer may send per second, sustained.
    pub direct_per_second: u32,
    /// ... and in a burst.
    pub direct_burst: u32,
    /// Disconnected peers remembered (the longest gone are forgotten).
    pub max_known_peers: usize,
    /// Addresses kept per peer.
    pub max_addrs_per_peer: usize,
    /// Adverts held (a flood of strangers' adverts displaces only other
    /// strangers; see `AdvertBook::insert_ranked`).
    pub max_adverts: usize,
    /// Signed adverts kept to hand to joining peers.
    pub max_advert_envelopes: usize,
    /// A peer asked for adverts may answer within this many seconds.
    pub bundle_deadline_secs: u64,
    /// Adverts taken from one peer's answer to one sync request.
    pub max_adverts_per_sync: usize,
    /// Receipts stored per signer per hour.
    pub receipts_per_signer_per_hour: u32,
    /// Signers whose receipt count is tracked at once.
    pub max_receipt_signers: usize,
    /// Receipts waiting to be verified and written.
    pub ledger_queue: usize,
    /// Live-output events of running jobs waiting for the event loop (the
    /// oldest are dropped when it is full).
    pub log_queue: usize,
    /// Client jobs whose live output is kept for the API.
    pub max_job_logs: usize,
    /// Output bytes a job may write when it declares no storage.
    pub output_quota_bytes: u64,
    /// Live-output bytes a job may stream (stdout and stderr together).
    pub log_quota_bytes: u64,
    /// Total size of fetched outputs kept in `results/`; the oldest jobs'
    /// go first.
    pub results_max_bytes: u64,
    /// Fetched outputs are deleted this many seconds after they arrived.
    pub results_max_age_secs: u64,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        let net = modchain_net::NetLimits::default();
        LimitsSettings {
            max_inbound_connections: net.max_inbound_connections,
            max_outbound_connections: net.max_outbound_connections,
            connections_per_peer: net.connections_per_peer,
            streams_per_connection: net.streams_per_connection,
            direct_per_second: net.direct_per_second as u32,
            direct_burst: net.direct_burst as u32,
            max_known_peers: net.max_known_peers,
            max_addrs_per_peer: net.max_addrs_per_peer,
            max_adverts: modchain_protocol::DEFAULT_MAX_ADVERTS,
            max_advert_envelopes: net.max_advert_envelopes,
            bundle_deadline_secs: net.bundle_deadline.as_secs(),
            max_adverts_per_sync: net.max_adverts_per_sync,
            receipts_per_signer_per_hour: 3600,
            max_receipt_signers: 100_000,
            ledger_queue: 1024,
            log_queue: 4096,
            max_job_logs: 256,
            output_quota_bytes: 1 << 30,
            // The adapters' own default (`DEFAULT_LOG_QUOTA_BYTES`, checked
            // equal by a test): this file is also compiled into the fuzz
            // crate, which does not link the adapters.
            log_quota_bytes: 64 << 20,
            results_max_bytes: 10 << 30,
            results_max_age_secs: 7 * 24 * 3600,
        }
    }
}

impl LimitsSettings {
    /// The network layer's share, for at most `max_connections` connections.
    pub fn net(&self, max_connections: u32) -> modchain_net::NetLimits {
        modchain_net::NetLimits {
            max_connections,
            max_inbound_connections: self.max_inbound_connections,
            max_outbound_connections: self.max_outbound_connections,
            connections_per_peer: self.connections_per_peer,
            streams_per_connection: self.streams_per_connection,
            direct_per_second: f64::from(self.direct_per_second),
            direct_burst: f64::from(self.direct_burst),
            max_known_peers: self.max_known_peers,
            max_addrs_per_peer: self.max_addrs_per_peer,
            max_advert_envelopes: self.max_advert_envelopes,
            bundle_deadline: Duration::from_secs(self.bundle_deadline_secs),
            max_adverts_per_sync: self.max_adverts_per_sync,
        }
    }
}

/// The `[relay]` table: relaying for peers that cannot be dialled (behind
/// a NAT). A node relays only where peers can reach it, so serving costs a
/// node behind a NAT nothing.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Relay for others (circuit relay v2), within the limits below.
    pub serve: bool,
    /// Peers holding a reservation at once.
    pub max_reservations: usize,
    /// Relayed connections at once.
    pub max_circuits: usize,
    /// A relayed connection closes after this many seconds...
    pub max_circuit_secs: u64,
    /// ...or after this many bytes each way.
    pub max_circuit_bytes: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let l = modchain_net::nat::RelayLimits::default();
        RelaySettings {
            serve: true,
            max_reservations: l.max_reservations,
            max_circuits: l.max_circuits,
            max_circuit_secs: l.max_circuit_duration.as_secs(),
            max_circuit_bytes: l.max_circuit_bytes,
        }
    }
}

impl RelaySettings {
    /// The limits to serve within, or `None` when not serving.
    pub fn limits(&self) -> Option<modchain_net::nat::RelayLimits> {
        self.serve.then(|| modchain_net::nat::RelayLimits {
            max_reservations: self.max_reservations,
            max_circuits: self.max_circuits,
            max_circuit_duration: Duration::from_secs(self.max_circuit_secs),
            max_circuit_bytes: self.max_circuit_bytes,
            ..modchain_net::nat::RelayLimits::default()
        })
    }
}

/// The `[wasm]` table: how the wasm adapter keeps compiled modules.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WasmSettings {
    /// Most MiB of compiled modules kept for reuse (least recently used
    /// evicted first); 0 compiles every run afresh.
    pub module_cache_mib: u64,
}

impl Default for WasmSettings {
    fn default() -> Self {
        WasmSettings {
            module_cache_mib: 256,
        }
    }
}

/// The `[llm]` table: which models the llm adapter serves.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    /// GGUF files to serve besides every `*.gguf` in `<data-dir>/models/`.
    pub models: Vec<PathBuf>,
    /// An Ollama server this provider runs (e.g. `http://127.0.0.1:11434`):
    /// its models are served too, through its HTTP API.
    pub ollama_url: Option<String>,
    /// A bearer token sent with every call to `ollama_url`: for a server
    /// behind an authenticating proxy, or another Modchain node's
    /// Ollama-compatible API (the `api.token` file in its data directory).
    pub ollama_token: Option<String>,
    /// Look for models added or removed (files, the Ollama server's list)
    /// this often, in seconds, and advertise the change; 0 never does.
    pub rescan_seconds: u64,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            models: Vec::new(),
            ollama_url: None,
            ollama_token: None,
            rescan_seconds: 30,
        }
    }
}

impl LlmSettings {
    /// How often to look for model changes; `None` when never.
    pub fn rescan_interval(&self) -> Option<Duration> {
        (self.rescan_seconds > 0).then(|| Duration::from_secs(self.rescan_seconds))
    }
}

/// The `[docker]` table: whether and how the docker adapter runs jobs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSettings {
    /// Offer the docker adapter when the daemon answers.
    pub enabled: bool,
    /// Give network access to jobs that ask for it.
    pub allow_network: bool,
    /// Image name patterns allowed to run (`*` matches any suffix); empty
    /// allows none.
    pub allowed_images: Vec<String>,
    /// Pull images that are not present.
    pub allow_pull: bool,
    /// Run only images named by digest (`name@sha256:…`), whose local
    /// image has that digest.
    pub require_digest: bool,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            enabled: true,
            allow_network: false,
            allowed_images: Vec::new(),
            allow_pull: false,
            require_digest: false,
        }
    }
}

/// What this node charges, in micro-credits (1 credit = 1,000,000).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub per_job: u64,
    pub per_core_second: u64,
    pub per_gib_memory_second: u64,
    pub per_gpu_second: u64,
    pub per_1k_tokens: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdvertSettings {
    /// How often the advert is republished unchanged.
    pub interval_secs: u64,
    /// How long peers keep an advert without a newer one.
    pub ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            bootstrap: Vec::new(),
            api: SocketAddr::from(([127, 0, 0, 1], 7777)),
            api_allowed_hosts: Vec::new(),
            orchestrator: false,
            max_connections: modchain_net::wire::DEFAULT_MAX_CONNECTIONS,
            provider: true,
            prices: Prices::default(),
            advert: AdvertSettings::default(),
            docker: DockerSettings::default(),
            llm: LlmSettings::default(),
            limits: LimitsSettings::default(),
            wasm: WasmSettings::default(),
            relay: RelaySettings::default(),
        }
    }
}

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            per_job: 1_000,
            per_core_second: 100,
            per_gib_memory_second: 20,
            per_gpu_second: 10_000,
            per_1k_tokens: 2_000,
        }
    }
}

impl Default for AdvertSettings {
    fn default() -> Self {
        AdvertSettings {
            interval_secs: 60,
            ttl_secs: 180,
        }
    }
}

impl Prices {
    pub fn to_table(&self) -> PriceTable {
        PriceTable {
            per_job: Credits(self.per_job),
            per_core_second: Credits(self.per_core_second),
            per_gib_memory_second: Credits(self.per_gib_memory_second),
            per_gpu_second: Credits(self.per_gpu_second),
            per_1k_tokens: Credits(self.per_1k_tokens),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}, line {line}, key `{key}`: {problem}; expected {expected}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
        expected: String,
    },
    #[error("{path}: {problem}")]
    Syntax { path: PathBuf, problem: String },
}

/// What a key's value must look like, in the operator's words.
fn expected_form(key: &str) -> &'static str {
    match key {
        "listen" => "a list of multiaddrs, e.g. listen = [\"/ip4/0.0.0.0/tcp/4001\"]",
        "bootstrap" => {
            "a list of full multiaddrs ending in /p2p/<peer id>, e.g. bootstrap = [\"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...\"]"
        }
        "api" => {
            "a loopback address and port, e.g. api = \"127.0.0.1:7777\" (port 0 picks a free one)"
        }
        "orchestrator"
        | "provider"
        | "docker.enabled"
        | "docker.allow_network"
        | "docker.allow_pull"
        | "docker.require_digest" => "true or false",
        "docker.allowed_images" => {
            "a list of image name patterns, e.g. allowed_images = [\"busybox:*\"] (empty allows no image)"
        }
        "wasm.module_cache_mib" => "a whole number of MiB, e.g. module_cache_mib = 256",
        "api_allowed_hosts" => {
            "a list of host names, e.g. api_allowed_hosts = [\"modchain.local\"]"
        }
        "max_connections" => "a whole number, e.g. max_connections = 256",
        "llm.rescan_seconds" => {
            "a whole number of seconds, e.g. rescan_seconds = 30 (0 never rescans)"
        }
        k if k.starts_with("prices.") => "a whole number of micro-credits (1 credit = 1000000)",
        k if k.starts_with("advert.") => "a whole number of seconds",
        k if k.starts_with("limits.") => "a whole number, e.g. direct_burst = 400",
        _ => "one of the keys documented in the file `modchain init` writes",
    }
}

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(cause) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    cause,
                });
            }
        };
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let problem = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let (line, key) = locate(text, span.start);
                    ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        expected: expected_form(&key).to_string(),
                        key,
                        problem,
                    }
                }
                None => ConfigError::Syntax {
                    path: path.to_path_buf(),
                    problem,
                },
            }
        })?;
        config.check(text, path)?;
        Ok(config)
    }

    /// Checks what serde cannot: bootstrap entries and the API address.
    fn check(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        for entry in &self.bootstrap {
            if let Err(e) = BootstrapAddr::parse(entry) {
                let line = text.find(entry.as_str()).map_or(0, |at| locate(text, at).0);
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key: "bootstrap".into(),
                    problem: e.to_string(),
                    expected: expected_form("bootstrap").into(),
                });
            }
        }
        if !self.api.ip().is_loopback() {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("api"))
                .map_or(0, |i| i + 1);
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key: "api".into(),
                problem: format!(
                    "{} is not a loopback address; the API must not be reachable from the network",
                    self.api
                ),
                expected: expected_form("api").into(),
            });
        }
        Ok(())
    }

    /// The bootstrap list from config plus flags, parsed.
    pub fn bootstrap_peers(
        &self,
        extra: &[String],
    ) -> Result<Vec<BootstrapAddr>, modchain_net::BootstrapListError> {
        let mut out: Vec<BootstrapAddr> = Vec::new();
        for s in self.bootstrap.iter().chain(extra) {
            let p = BootstrapAddr::parse(s)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }
}

/// The 1-based line of byte `at`, and the dotted key whose value holds it.
fn locate(text: &str, at: usize) -> (usize, String) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let mut key = None;
    let mut table = None;
    // Walk back from the line of the error to the nearest `key =` and the
    // table header above it.
    let lines: Vec<&str> = text.lines().collect();
    for l in lines.iter().take(line).rev() {
        let t = l.trim_start();
        if key.is_none()
            && let Some((k, _)) = t.split_once('=')
        {
            let k = k.trim();
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                key = Some(k.to_string());
            }
        }
        if t.starts_with('[') && !t.starts_with("[[") {
            table = Some(
                t.trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .to_string(),
            );
            break;
        }
    }
    let key = match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "?".into(),
    };
    (line, key)
}

/// The file `modchain init` writes: every key, commented, at its default.
pub fn commented_template() -> String {
    let d = Config::default();
    let p = &d.prices;
    let a = &d.advert;
    format!(
        r#"# Modchain node configuration. Every key is optional: a missing key takes the
# default shown here. Flags to `modchain start` override these.

# Addresses to listen on (multiaddrs). TCP and QUIC on port 4001 by default.
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

# Bootstrap peers to join through: full multiaddrs ending in /p2p/<peer id>,
# as `modchain-bootstrap` prints them. Unreachable ones are retried with backoff.
bootstrap = []

# The local HTTP API (loopback only). Port 0 picks a free port; the URL is
# written to api.url in the data directory.
api = "{api}"
# Host names the API answers to besides its address and localhost; a
# request naming any other host is refused (so a web page cannot reach the
# API by pointing its own name at this machine).
api_allowed_hosts = []

# Stand as an orchestrator candidate (runs job auctions when elected).
orchestrator = {orch}

# Most connections held at once.
max_connections = {maxc}

# Sell this machine's capacity: bid on jobs and run the ones won. Capacity
# is what the hardware has (threads, memory, GPUs, free storage).
provider = {provider}

# Prices, in micro-credits (1 credit = 1000000).
[prices]
per_job = {per_job}
per_core_second = {per_core}
per_gib_memory_second = {per_gib}
per_gpu_second = {per_gpu}
per_1k_tokens = {per_tok}

[advert]
# Republish the advert this often even when nothing changed.
interval_secs = {interval}
# Peers forget an advert this long after it was published.
ttl_secs = {ttl}

# The docker adapter (the wasm adapter is always offered).
[docker]
# Offer it when the Docker daemon answers at start-up.
enabled = {docker_enabled}
# Give network access to jobs that ask for it (off: jobs never reach the network).
allow_network = {docker_net}
# Image name patterns jobs may run (`*` matches any suffix), e.g.
# allowed_images = ["busybox:*", "python:3.12-slim"]. Empty allows no image:
# name the ones jobs may run, so that no job can run an image of your own
# (and read what is baked into it).
allowed_images = []
# Pull images that are not present.
allow_pull = {docker_pull}
# Run only images named by digest (`name@sha256:<64 hex>`, with a pattern
# such as "busybox@sha256:*" above) whose local image has that digest.
require_digest = {docker_digest}

# Relaying for peers behind a NAT that no one can dial (circuit relay v2).
# Only peers that can reach this node use it, so behind a NAT it costs
# nothing; on a public machine each relayed connection carries at most
# max_circuit_bytes each way for at most max_circuit_secs.
[relay]
serve = {relay_serve}
max_reservations = {relay_res}
max_circuits = {relay_circ}
max_circuit_secs = {relay_secs}
max_circuit_bytes = {relay_bytes}

# The wasm adapter (always offered).
[wasm]
# MiB of compiled modules kept for reuse, least recently used evicted first.
module_cache_mib = {wasm_cache}

# The llm adapter: serves every GGUF model in <data-dir>/models/ in this
# process (llama.cpp), the files listed here, and an Ollama server's models.
# With no model anywhere it is not offered.
[llm]
models = []
# ollama_url = "http://127.0.0.1:11434"
# A bearer token for that server, when it asks for one (another Modchain
# node's Ollama-compatible API does: the api.token file in its data directory).
# ollama_token = "…"
# Models added to or removed from <data-dir>/models (or the Ollama server)
# are found and advertised within this many seconds; 0 turns it off. (A
# node that started with no model at all needs a restart for its first.)
rescan_seconds = 30

# Caps on what other peers (and jobs) can make this node hold; past a cap
# the excess is dropped and counted in /metrics (modchain_table_*,
# modchain_dropped). The defaults suit a normal node.
[limits]
# Connections other peers opened to us, and ours to them (of max_connections).
max_inbound_connections = {l_in}
max_outbound_connections = {l_out}
connections_per_peer = {l_cpp}
# Direct-message streams open at once per connection.
streams_per_connection = {l_spc}
# Direct requests per peer: per second sustained, and in a burst.
direct_per_second = {l_dps}
direct_burst = {l_db}
# Disconnected peers remembered, and addresses kept per peer.
max_known_peers = {l_mkp}
max_addrs_per_peer = {l_map}
# Adverts held; when full, a stranger's advert displaces only another
# stranger's, never one from a peer with reputation.
max_adverts = {l_ma}
# Signed adverts kept to hand to joining peers.
max_advert_envelopes = {l_mae}
# A peer asked for its adverts may answer within this many seconds, with at
# most this many adverts; bundles nobody asked for are dropped unopened.
bundle_deadline_secs = {l_bd}
max_adverts_per_sync = {l_maps}
# Receipts stored per signer per hour, and signers tracked at once.
receipts_per_signer_per_hour = {l_rq}
max_receipt_signers = {l_mrs}
# Receipts waiting to be verified and written; live-output events waiting
# for the node (the oldest dropped); client jobs whose live output is kept.
ledger_queue = {l_lq}
log_queue = {l_logq}
max_job_logs = {l_mjl}
# Output bytes a job may write when it declares no storage.
output_quota_bytes = {l_oq}
# Live-output bytes a job may stream; past it the rest is not streamed.
log_quota_bytes = {l_logquota}
# Fetched outputs in results/: total bytes kept (oldest jobs' go first), and
# their age in seconds before they are deleted.
results_max_bytes = {l_rmb}
results_max_age_secs = {l_rma}
"#,
        api = d.api,
        orch = d.orchestrator,
        maxc = d.max_connections,
        per_job = p.per_job,
        per_core = p.per_core_second,
        per_gib = p.per_gib_memory_second,
        per_gpu = p.per_gpu_second,
        per_tok = p.per_1k_tokens,
        interval = a.interval_secs,
        ttl = a.ttl_secs,
        provider = d.provider,
        docker_enabled = d.docker.enabled,
        docker_net = d.docker.allow_network,
        docker_pull = d.docker.allow_pull,
        l_in = d.limits.max_inbound_connections,
        l_out = d.limits.max_outbound_connections,
        l_cpp = d.limits.connections_per_peer,
        l_spc = d.limits.streams_per_connection,
        l_dps = d.limits.direct_per_second,
        l_db = d.limits.direct_burst,
        l_mkp = d.limits.max_known_peers,
        l_map = d.limits.max_addrs_per_peer,
        l_ma = d.limits.max_adverts,
        l_mae = d.limits.max_advert_envelopes,
        l_bd = d.limits.bundle_deadline_secs,
        l_maps = d.limits.max_adverts_per_sync,
        l_rq = d.limits.receipts_per_signer_per_hour,
        l_mrs = d.limits.max_receipt_signers,
        l_lq = d.limits.ledger_queue,
        l_logq = d.limits.log_queue,
        l_mjl = d.limits.max_job_logs,
        l_oq = d.limits.output_quota_bytes,
        l_logquota = d.limits.log_quota_bytes,
        l_rmb = d.limits.results_max_bytes,
        l_rma = d.limits.results_max_age_secs,
        docker_digest = d.docker.require_digest,
        wasm_cache = d.wasm.module_cache_mib,
        relay_serve = d.relay.serve,
        relay_res = d.relay.max_reservations,
        relay_circ = d.relay.max_circuits,
        relay_secs = d.relay.max_circuit_secs,
        relay_bytes = d.relay.max_circuit_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_log_quota_is_the_adapters_own() {
        assert_eq!(
            LimitsSettings::default().log_quota_bytes,
            modchain_adapters::DEFAULT_LOG_QUOTA_BYTES
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn the_packaged_config_is_the_template_with_every_default() {
        // /etc/modchain/config.toml in the .deb: a header, then what
        // `modchain init` writes. Regenerate it when the template changes.
        let packaged = include_str!("../../packaging/config.toml");
        let config = parse(packaged).expect("packaging/config.toml parses");
        assert_eq!(config, Config::default());
        assert!(
            packaged.ends_with(&commented_template()),
            "packaging/config.toml no longer ends with commented_template()'s text"
        );
    }

    #[test]
    fn template_parses_to_the_defaults() {
        assert_eq!(
            parse(&commented_template()).expect("template"),
            Config::default()
        );
        assert_eq!(parse("").expect("empty"), Config::default());
    }

    #[test]
    fn wrong_type_names_key_line_and_form() {
        let err = parse("orchestrator = false\n\n[prices]\nper_core_second = \"cheap\"\n")
            .expect_err("bad");
        let msg = err.to_string();
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("`prices.per_core_second`"), "{msg}");
        assert!(msg.contains("micro-credits"), "{msg}");
    }

    #[test]
    fn bad_multiaddr_names_listen() {
        let err = parse(
            "api = \"127.0.0.1:0\"\nlisten = [\n  \"/ip4/0.0.0.0/tcp/4001\",\n  \"tcp:4001\",\n]\n",
        )
        .expect_err("bad");
        let msg = err.to_string();
        assert!(msg.contains("`listen`"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn bootstrap_without_peer_id_is_refused() {
        let err = parse("bootstrap = [\"/ip4/10.0.0.1/tcp/4001\"]\n").expect_err("bad");
        let msg = err.to_string();
        assert!(
            msg.contains("line 1") && msg.contains("`bootstrap`") && msg.contains("/p2p/"),
            "{msg}"
        );
    }

    #[test]
    fn docker_table_and_provider_switch() {
        let c = parse(
            "provider = false\n[docker]\nenabled = false\nallowed_images = [\"busybox:*\"]\n",
        )
        .expect("docker");
        assert!(!c.provider);
        assert!(!c.docker.enabled);
        assert_eq!(c.docker.allowed_images, vec!["busybox:*".to_string()]);
        assert!(!c.docker.allow_network);
        let err = parse("[docker]\nallow_network = 1\n").expect_err("bad");
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn unknown_key_and_public_api_are_refused() {
        let err = parse("listn = []\n").expect_err("unknown");
        assert!(err.to_string().contains("listn"), "{err}");
        let err = parse("api = \"0.0.0.0:7777\"\n").expect_err("public");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
