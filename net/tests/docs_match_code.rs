//! The tables of `docs/protocol.md` against the code they describe, so that
//! neither drifts from the other unnoticed: the kinds and their indices, the
//! payload limits, the rejection labels, the libp2p settings (protocol ids,
//! timeouts, connection limits, gossipsub and its scoring), direct-message
//! framing, the verdicts on gossip, the DHT keys and the defaults.
//!
//! Each table is found by its heading and read row by row (cells split on
//! `|`); a failure names the section, the row, what the page says and what
//! the code says. One setting is a formula inside a function rather than a
//! constant (the limit of pending incoming connections): it is read from the
//! source text, and the test says so when it cannot find it.

use libp2p::futures::executor::block_on;
use libp2p::gossipsub;
use libp2p::request_response::Codec;
use modchain_net::behaviour::{EnvelopeCodec, capability_keys};
use modchain_net::driver::{SYNC_ANSWER_INTERVAL, SYNC_PEERS_PER_JOIN, Verdict, screen_gossip};
use modchain_net::wire;
use modchain_protocol::{
    AdapterInfo, AdvertBundle, AdvertSync, Cancel, CapabilityAdvert, ContainerRuntime, Credits,
    Digest, Envelope, FetchOutput, GOSSIP_FRAMING_BYTES, GpuInfo, GpuVendor,
    KNOWN_ADVERT_MAX_BYTES, Keypair, Kind, LogChunk, LogStream, MAX_ADVERT_ITEMS,
    MAX_BUNDLE_ADVERTS, MAX_BUNDLE_BYTES, MAX_CLOCK_SKEW_MS, MAX_DECODE_BYTES,
    MAX_DIRECT_MESSAGE_AGE_MS, MAX_GOSSIP_BYTES, MAX_OUTPUT_NAME_BYTES, MAX_SYNC_KNOWN, Message,
    ModelInfo, Outcome, OutputChunk, PROTOCOL_VERSION, Peer, PeerConfig, REJOIN_ADVERT_DELAY_MS,
    REPUTATION_SCALE, Receipt, ReceiptError, Refused, Rejection, SignedReceipt, Timestamp, Topic,
    limits, max_envelope_bytes,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PROTOCOL_MD: &str = include_str!("../../docs/protocol.md");
const WIRE_RS: &str = include_str!("../src/wire.rs");
const BEHAVIOUR_RS: &str = include_str!("../src/behaviour.rs");
const SWARM_DRIVER_RS: &str = include_str!("../src/swarm_driver.rs");

// ---- Reading the page -------------------------------------------------------

/// The text under `heading` (a whole line, e.g. `### 2.3 Payload size
/// limits`), up to the next heading of the same or a higher level.
fn section(heading: &str) -> &'static str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut start = None;
    let mut offset = 0;
    for line in PROTOCOL_MD.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        let trimmed = line.trim_end();
        match start {
            None if trimmed == heading => start = Some(offset),
            Some(s) => {
                let hashes = trimmed.chars().take_while(|c| *c == '#').count();
                if hashes > 0 && hashes <= level && trimmed[hashes..].starts_with(' ') {
                    return &PROTOCOL_MD[s..here];
                }
            }
            None => {}
        }
    }
    match start {
        Some(s) => &PROTOCOL_MD[s..],
        None => panic!("docs/protocol.md has no heading `{heading}`"),
    }
}

/// One table: its header cells and its rows' cells.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Every table in `text`, in order.
fn tables(text: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim_start().starts_with('|') {
            lines.push(line);
        } else if !lines.is_empty() {
            let header = cells(lines[0]);
            let rows = lines.iter().skip(2).map(|l| cells(l)).collect();
            out.push(Table { header, rows });
            lines.clear();
        }
    }
    out
}

/// The first table under `heading` whose first header cell is `first`.
fn table(heading: &str, first: &str) -> Table {
    tables(section(heading))
        .into_iter()
        .find(|t| t.header.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no table starting with `| {first} |` under `{heading}`"))
}

/// The rows of a table keyed by their first cell, backticks removed; a
/// first cell seen twice fails.
fn rows_by_key(heading: &str, t: &Table) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for row in &t.rows {
        let key = plain(&row[0]);
        assert!(
            out.insert(key.clone(), row.clone()).is_none(),
            "{heading}: two rows for `{key}`"
        );
    }
    out
}

/// A cell without its backticks.
fn plain(cell: &str) -> String {
    cell.replace('`', "")
}

/// The backticked spans of a cell, in order.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The numbers written in a cell outside backticks: `1,310,976`, `0.9`,
/// `−20` (a minus sign or a hyphen).
fn numbers(cell: &str) -> Vec<f64> {
    let text: String = cell
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let negative = matches!(chars[i], '−' | '-')
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        let starts = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !(negative || starts) {
            i += 1;
            continue;
        }
        if negative {
            i += 1;
        }
        let mut digits = String::new();
        while i < chars.len() {
            let c = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() {
                digits.push(c);
            } else if c == ',' && next_digit {
            } else if c == '.' && next_digit {
                digits.push('.');
            } else {
                break;
            }
            i += 1;
        }
        let value: f64 = digits
            .parse()
            .unwrap_or_else(|e| panic!("cannot read `{digits}` in `{cell}` as a number: {e}"));
        out.push(if negative { -value } else { value });
    }
    out
}

/// `n` as the page writes it: `1,310,976`.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- Reading the source, for a setting that is no constant ---------------------

/// The text between `needle` and the next `)` in `src` (a file of this
/// crate named `file`): the literal argument of a builder call.
fn argument_after(file: &str, src: &str, needle: &str) -> String {
    let at = src.find(needle).unwrap_or_else(|| {
        panic!(
            "{file} no longer contains `{needle}`; if the setting became a constant, \
             compare the page with that constant here instead"
        )
    });
    let rest = &src[at + needle.len()..];
    let end = rest
        .find(')')
        .unwrap_or_else(|| panic!("{file}: no `)` after `{needle}`"));
    rest[..end].trim().to_string()
}

// ---- Expectations ------------------------------------------------------------

/// What a value cell must say.
#[derive(Debug)]
enum Says {
    /// Exactly these numbers, in this order (outside backticks).
    Numbers(Vec<f64>),
    /// A duration in whole seconds: `60 s`.
    Seconds(u64),
    /// Exactly these backticked spans, in this order.
    Ticked(Vec<String>),
    /// Contains each of these.
    Mentions(Vec<String>),
}

fn check(heading: &str, key: &str, cell: &str, says: &Says) {
    match says {
        Says::Numbers(want) => {
            let got = numbers(cell);
            let same =
                got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9);
            assert!(
                same,
                "{heading}, row `{key}`: the page says `{cell}` (numbers {got:?}); \
                 the code says {want:?}"
            );
        }
        Says::Seconds(want) => {
            let ok = numbers(cell) == vec![*want as f64] && cell.trim_end().ends_with(" s");
            assert!(
                ok,
                "{heading}, row `{key}`: the page says `{cell}`; the code says {want} s"
            );
        }
        Says::Ticked(want) => {
            let got = ticked(cell);
            assert_eq!(
                &got, want,
                "{heading}, row `{key}`: the page says `{cell}`; the code says {want:?}"
            );
        }
        Says::Mentions(want) => {
            for w in want {
                assert!(
                    cell.contains(w.as_str()),
                    "{heading}, row `{key}`: the page says `{cell}`, which does not mention \
                     `{w}` as the code has it"
                );
            }
        }
    }
}

/// Every row of the table has an expectation and every expectation a row.
fn check_all(heading: &str, first: &str, column: usize, expected: Vec<(&str, Says)>) {
    let t = table(heading, first);
    let rows = rows_by_key(heading, &t);
    let keys: BTreeSet<&str> = expected.iter().map(|(k, _)| *k).collect();
    for key in rows.keys() {
        assert!(
            keys.contains(key.as_str()),
            "{heading}: row `{key}` is not checked against the code; \
             add it to this test (net/tests/docs_match_code.rs)"
        );
    }
    for (key, says) in &expected {
        let row = rows
            .get(*key)
            .unwrap_or_else(|| panic!("{heading}: no row `{key}`; the code has {says:?}"));
        let cell = row
            .get(column)
            .unwrap_or_else(|| panic!("{heading}, row `{key}`: no column {column}"));
        check(heading, key, cell, says);
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

// ---- The tests ----------------------------------------------------------------

/// A message of `kind`, for the kinds that are quick to build.
fn sample(kind: Kind) -> Option<Message> {
    let job_id = Digest::of(b"job");
    Some(match kind {
        Kind::Advert => Message::Advert(CapabilityAdvert::default()),
        Kind::Cancel => Message::Cancel(Cancel {
            job_id,
            reason: "x".into(),
        }),
        Kind::Log => Message::Log(LogChunk {
            job_id,
            attempt: 0,
            seq: 0,
            stream: LogStream::Stdout,
            data: b"x".to_vec(),
        }),
        Kind::Fetch => Message::Fetch(FetchOutput {
            job_id,
            digest: job_id,
            offset: 0,
            length: 1,
        }),
        Kind::Chunk => Message::Chunk(OutputChunk {
            job_id,
            digest: job_id,
            offset: 0,
            total_size: 1,
            data: b"x".to_vec(),
        }),
        Kind::AdvertSync => Message::AdvertSync(AdvertSync { known: Vec::new() }),
        Kind::AdvertBundle => Message::AdvertBundle(AdvertBundle {
            adverts: Vec::new(),
        }),
        _ => return None,
    })
}

const NOW: Timestamp = Timestamp(1_764_000_000_000);

fn gpu() -> GpuInfo {
    GpuInfo {
        vendor: GpuVendor::Nvidia,
        model: "GPU".into(),
        vram_bytes: 1 << 30,
        compute_capability: None,
        driver: "1".into(),
    }
}

#[test]
fn kinds_table_lists_every_kind_with_its_wire_index_and_name() {
    let heading = "#### Kinds";
    let t = table(heading, "Index");
    assert_eq!(
        t.rows.len(),
        Kind::ALL.len(),
        "{heading}: the page lists {} kinds, the code has {} ({:?})",
        t.rows.len(),
        Kind::ALL.len(),
        Kind::ALL
    );
    let by_name: BTreeMap<String, &Vec<String>> =
        t.rows.iter().map(|r| (plain(&r[2]), r)).collect();
    for kind in Kind::ALL {
        let row = by_name.get(kind.name()).unwrap_or_else(|| {
            panic!(
                "{heading}: no row for kind `{}` ({kind:?}); the code has it",
                kind.name()
            )
        });
        // The index on the wire is bincode's variant index.
        let wire = modchain_protocol::encode(&kind);
        let index = u64::from(wire[0]);
        assert_eq!(wire.len(), 1, "kind indices above 250 need a new reading");
        check(
            heading,
            kind.name(),
            &row[0],
            &Says::Numbers(vec![index as f64]),
        );
        check(
            heading,
            kind.name(),
            &row[1],
            &Says::Ticked(vec![format!("{kind:?}")]),
        );
        // Where the page says a kind is direct only, gossip must refuse it
        // as misrouted; where it names a topic, gossip must take it.
        if let Some(message) = sample(kind) {
            let signed = Envelope::seal(&Keypair::from_seed(1), NOW, message);
            let refused = wire::TOPICS.iter().all(|t| {
                matches!(
                    screen_gossip(Some(*t), Ok(signed.clone())),
                    Err(Verdict::Misrouted(_))
                )
            });
            let says_direct_only = row[3].contains("direct only");
            assert_eq!(
                says_direct_only,
                refused,
                "{heading}, row `{}`: the page says `{}`; screen_gossip {} it",
                kind.name(),
                row[3],
                if refused {
                    "refuses as misrouted"
                } else {
                    "lets through"
                }
            );
        }
    }
    let topics_named: BTreeSet<String> = t
        .rows
        .iter()
        .flat_map(|r| ticked(&r[3]))
        .filter(|s| s.starts_with("modchain/"))
        .collect();
    let topics: BTreeSet<String> = wire::TOPICS.iter().map(|t| t.name().to_string()).collect();
    assert_eq!(
        topics_named, topics,
        "{heading}: the topics named under Travels differ from wire::TOPICS"
    );
}

#[test]
fn payload_limits_match_max_payload_bytes() {
    let heading = "### 2.3 Payload size limits";
    let t = table(heading, "Kind");
    let rows = rows_by_key(heading, &t);
    for key in rows.keys() {
        assert!(
            Kind::ALL.iter().any(|k| k.name() == key),
            "{heading}: row `{key}` names no kind of the code"
        );
    }
    for kind in Kind::ALL {
        let row = rows
            .get(kind.name())
            .unwrap_or_else(|| panic!("{heading}: no row for kind `{}`", kind.name()));
        check(
            heading,
            kind.name(),
            &row[2],
            &Says::Numbers(vec![kind.max_payload_bytes() as f64]),
        );
    }
    let text = section(heading);
    for (name, value) in [
        ("MAX_PARAMS_BYTES", limits::MAX_PARAMS_BYTES),
        ("MAX_LOG_BYTES", limits::MAX_LOG_BYTES),
        ("MAX_INLINE_OUTPUT_BYTES", limits::MAX_INLINE_OUTPUT_BYTES),
        ("MAX_OUTPUT_FILES", limits::MAX_OUTPUT_FILES),
    ] {
        let written = format!("`{name}` = {}", grouped(value as u64));
        assert!(
            text.contains(&written),
            "{heading}: expected `{written}` (the code's value of {name})"
        );
    }
    let largest = format!("**{}**", grouped(max_envelope_bytes() as u64));
    assert!(
        text.contains(&largest),
        "{heading}: the largest envelope should read {largest}, as max_envelope_bytes() says"
    );
}

#[test]
fn rejection_labels_match_the_code() {
    let heading = "## 6. Rejection reasons";
    // Every variant's label is in LABELS, and LABELS has no other.
    let samples = [
        Rejection::TooLarge { len: 0, limit: 0 },
        Rejection::Malformed(String::new()),
        Rejection::UnknownVersion(0),
        Rejection::BadSignature(Kind::Bid),
        Rejection::MalformedPayload {
            kind: Kind::Bid,
            reason: String::new(),
        },
        Rejection::FromTheFuture {
            kind: Kind::Bid,
            skew_ms: 0,
        },
        Rejection::Stale {
            kind: Kind::Bid,
            age_ms: 0,
        },
    ];
    let from_variants: BTreeSet<&str> = samples.iter().map(Rejection::label).collect();
    let labels: BTreeSet<&str> = Rejection::LABELS.into_iter().collect();
    assert_eq!(
        from_variants, labels,
        "Rejection::LABELS and label() differ"
    );

    let t = table(heading, "Label");
    let on_page: BTreeSet<String> = t.rows.iter().map(|r| plain(&r[0])).collect();
    let in_code: BTreeSet<String> = labels.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        on_page, in_code,
        "{heading}: the page's labels (left) differ from Rejection::LABELS (right)"
    );

    // The peer's own counters: made to count each, then compared.
    let mut peer = Peer::new(Keypair::from_seed(9), PeerConfig::default());
    let advert = |seed: u64, sequence: u64, expires_at: Timestamp, gpus: usize| {
        let ad = CapabilityAdvert {
            sequence,
            expires_at,
            gpus: vec![gpu(); gpus],
            ..CapabilityAdvert::default()
        };
        Envelope::seal(&Keypair::from_seed(seed), NOW, Message::Advert(ad))
    };
    let later = |ms: u64| Timestamp(NOW.0 + ms);
    peer.handle_signed(NOW, advert(1, 1, NOW, 0)); // expired
    peer.handle_signed(NOW, advert(2, 1, later(2 * 60 * 60 * 1000), 0)); // too long
    peer.handle_signed(NOW, advert(3, 1, later(60_000), MAX_ADVERT_ITEMS + 1)); // too large
    peer.handle_signed(NOW, advert(4, 5, later(60_000), 0));
    peer.handle_signed(NOW, advert(4, 5, later(60_000), 0)); // stale
    let me = Keypair::from_seed(1).node_id();
    let receipt = SignedReceipt {
        receipt: Receipt {
            job_id: Digest::of(b"job"),
            attempt: 0,
            client: me,
            provider: me,
            orchestrator: me,
            award_id: Digest([0; 32]),
            price: Credits(0),
            usage: Default::default(),
            outcome: Outcome::Executed(modchain_protocol::ExitStatus::Exited(0)),
            result_digest: None,
            issued_at: NOW,
        },
        client_signature: None,
        provider_signature: None,
        orchestrator_signature: None,
        award: Vec::new(),
    };
    peer.handle_signed(
        NOW,
        Envelope::seal(&Keypair::from_seed(1), NOW, Message::Receipt(receipt)),
    );
    let stats = peer.stats();
    let mut counted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if !stats.rejected.is_empty() {
        counted.insert(
            "rejected".into(),
            stats.rejected.keys().map(|s| s.to_string()).collect(),
        );
    }
    // A forged receipt lands among the refused; every refusal label is
    // documented, whether or not this test provoked it.
    assert_eq!(stats.refused.get("invalid_receipt"), Some(&1));
    counted.insert(
        "refused".into(),
        Refused::ALL.iter().map(|r| r.label().to_string()).collect(),
    );
    counted.insert(
        "adverts_rejected".into(),
        stats
            .adverts_rejected
            .keys()
            .map(|s| s.to_string())
            .collect(),
    );

    let t = table(heading, "Counter");
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counter = String::new();
    for row in &t.rows {
        if !row[0].is_empty() {
            counter = plain(&row[0]);
        }
        documented
            .entry(counter.clone())
            .or_default()
            .insert(plain(&row[1]));
    }
    assert_eq!(
        documented, counted,
        "{heading}: the PeerStats labels on the page (left) differ from those the peer \
         counts (right)"
    );

    // Misrouted is a verdict of its own, named in this section.
    let misrouted = screen_gossip(
        Some(Topic::Adverts),
        Ok(Envelope::seal(
            &Keypair::from_seed(1),
            NOW,
            Message::AdvertSync(AdvertSync { known: Vec::new() }),
        )),
    );
    let label = match &misrouted {
        Err(v) => v.label(),
        Ok(_) => panic!("a gossiped advert sync went through screen_gossip"),
    };
    assert!(
        section(heading).contains(&format!("`{label}`")),
        "{heading}: should name the `{label}` verdict"
    );
}

#[test]
fn libp2p_settings_match_wire() {
    let heading = "### 7.2 The libp2p layer";
    let config = wire::gossipsub_config().expect("the gossipsub configuration builds");
    let kad_timeout = secs(wire::KAD_QUERY_TIMEOUT);
    let request_timeout = secs(wire::DIRECT_REQUEST_TIMEOUT);
    let per_peer = f64::from(wire::CONNECTIONS_PER_PEER);
    let pending = argument_after(
        "net/src/behaviour.rs",
        BEHAVIOUR_RS,
        "with_max_pending_incoming(Some(",
    );
    for piece in [
        ".with_tcp(",
        "nodelay(true)",
        "noise::Config::new",
        "yamux::Config::default",
        ".with_quic()",
        ".with_relay_client(",
    ] {
        assert!(
            WIRE_RS.contains(piece),
            "{heading}: the Transports row describes `{piece}` in wire::build_swarm, \
             which is no longer there"
        );
    }
    check_all(
        heading,
        "Setting",
        1,
        vec![
            (
                "Transports",
                Says::Mentions(
                    [
                        "TCP",
                        "`nodelay`",
                        "noise",
                        "yamux",
                        "QUIC",
                        "circuit relay v2",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            ),
            (
                "NAT traversal",
                Says::Mentions(vec![
                    "AutoNAT v2".to_string(),
                    libp2p::relay::HOP_PROTOCOL_NAME.as_ref().to_string(),
                    "DCUtR".to_string(),
                    format!(
                        "{} MiB",
                        modchain_net::nat::RelayLimits::default().max_circuit_bytes >> 20
                    ),
                    format!(
                        "{} min",
                        modchain_net::nat::RelayLimits::default()
                            .max_circuit_duration
                            .as_secs()
                            / 60
                    ),
                ]),
            ),
            (
                "Kademlia protocol id",
                Says::Ticked(vec![wire::KAD_PROTOCOL.as_ref().to_string()]),
            ),
            (
                "Identify protocol version",
                Says::Ticked(vec![wire::IDENTIFY_PROTOCOL.to_string()]),
            ),
            (
                "Direct-message protocol id",
                Says::Ticked(vec![wire::MESSAGE_PROTOCOL.as_ref().to_string()]),
            ),
            (
                "Gossip topics",
                Says::Ticked(wire::TOPICS.iter().map(|t| t.name().to_string()).collect()),
            ),
            (
                "Idle-connection timeout",
                Says::Seconds(secs(wire::IDLE_CONNECTION_TIMEOUT)),
            ),
            ("Kademlia query timeout", Says::Seconds(kad_timeout)),
            (
                "Direct-message request timeout",
                Says::Seconds(request_timeout),
            ),
            (
                "Connections, total",
                Says::Numbers(vec![f64::from(wire::DEFAULT_MAX_CONNECTIONS)]),
            ),
            ("Connections per peer", Says::Numbers(vec![per_peer])),
            ("Pending incoming connections", Says::Ticked(vec![pending])),
            (
                "Largest direct message",
                Says::Numbers(vec![max_envelope_bytes() as f64]),
            ),
            (
                "Largest gossip message",
                Says::Numbers(vec![config.max_transmit_size() as f64]),
            ),
        ],
    );
}

#[test]
fn direct_messages_are_framed_and_acknowledged_as_documented() {
    let heading = "### 7.3 Direct messages";
    let text = section(heading);
    let limit = max_envelope_bytes();
    let mut codec = EnvelopeCodec;

    // A request: big-endian u32 length, then the bytes.
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(&wire::MESSAGE_PROTOCOL, &mut out, b"hello".to_vec()))
        .expect("a small request is written");
    assert_eq!(
        out.into_inner(),
        b"\x00\x00\x00\x05hello",
        "{heading}: framing"
    );
    assert!(
        text.contains("big-endian u32"),
        "{heading}: should say the length is a big-endian u32"
    );

    // The acknowledgement: an empty frame, sent before the message is opened.
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(codec.write_response(&wire::MESSAGE_PROTOCOL, &mut out, Vec::new()))
        .expect("an empty response is written");
    assert_eq!(out.into_inner(), [0u8; 4], "{heading}: the acknowledgement");
    assert!(
        SWARM_DRIVER_RS.contains("send_response(channel, Vec::new())"),
        "{heading}: the page says the response is empty; the SwarmDriver no longer \
         answers with `send_response(channel, Vec::new())`"
    );
    assert!(
        text.contains("four `00` bytes"),
        "{heading}: should say the response is an empty frame (four `00` bytes)"
    );

    // The size limit, both ways.
    let too_long = (limit as u32 + 1).to_be_bytes().to_vec();
    let mut input = libp2p::futures::io::Cursor::new(too_long);
    let err = block_on(codec.read_request(&wire::MESSAGE_PROTOCOL, &mut input))
        .expect_err("a frame over the limit is refused on reading");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    let err = block_on(codec.write_request(&wire::MESSAGE_PROTOCOL, &mut out, vec![0; limit + 1]))
        .expect_err("a frame over the limit is refused on writing");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(&wire::MESSAGE_PROTOCOL, &mut out, vec![0; limit]))
        .expect("a frame at the limit is written");
    for written in [
        format!("`max_envelope_bytes()` ({} bytes)", grouped(limit as u64)),
        "`InvalidData`".to_string(),
        "`InvalidInput`".to_string(),
    ] {
        assert!(
            text.contains(&written),
            "{heading}: expected `{written}`, as the codec has it"
        );
    }

    let timeout = secs(wire::DIRECT_REQUEST_TIMEOUT);
    let t = table(heading, "Step");
    let rows = rows_by_key(heading, &t);
    let row = rows
        .get("Timeout")
        .unwrap_or_else(|| panic!("{heading}: no row `Timeout`"));
    assert!(
        row[1].starts_with(&format!("{timeout} s ")),
        "{heading}, row `Timeout`: the page says `{}`; the code says {timeout} s",
        row[1]
    );
}

#[test]
fn gossipsub_settings_and_scores_match_wire() {
    let heading = "### 7.4 Gossipsub settings and peer scoring";
    let config = wire::gossipsub_config().expect("the gossipsub configuration builds");
    assert_eq!(
        config.mesh_n_low(),
        wire::MESH_N_LOW,
        "mesh_n_low is MESH_N_LOW"
    );

    // Message ids are BLAKE3 of the data, whoever relays it.
    let message = |source| gossipsub::Message {
        source,
        data: b"an envelope".to_vec(),
        sequence_number: Some(7),
        topic: wire::topic(Topic::Adverts).hash(),
    };
    let id = gossipsub::MessageId::from(Digest::of(b"an envelope").0.to_vec());
    assert_eq!(
        config.message_id(&message(None)),
        id,
        "{heading}: message id"
    );
    assert_eq!(
        config.message_id(&message(Some(libp2p::PeerId::random()))),
        id,
        "{heading}: the message id depends on the data alone"
    );
    assert!(
        WIRE_RS.contains("MessageAuthenticity::Signed"),
        "{heading}: the page says messages are signed (MessageAuthenticity::Signed)"
    );

    let validation = format!("{:?}", config.validation_mode());
    check_all(
        heading,
        "Setting",
        1,
        vec![
            (
                "Authenticity",
                Says::Mentions(vec!["`MessageAuthenticity::Signed`".into()]),
            ),
            ("Validation mode", Says::Ticked(vec![validation])),
            (
                "Application validation",
                Says::Mentions(vec![
                    if config.validate_messages() {
                        "On"
                    } else {
                        "Off"
                    }
                    .into(),
                    "`validate_messages`".into(),
                ]),
            ),
            (
                "Message id",
                Says::Mentions(vec!["BLAKE3".into(), "`Digest::of`".into()]),
            ),
            (
                "max_transmit_size",
                Says::Numbers(vec![MAX_GOSSIP_BYTES as f64, GOSSIP_FRAMING_BYTES as f64]),
            ),
            (
                "Heartbeat",
                Says::Numbers(vec![config.heartbeat_interval().as_secs_f64()]),
            ),
            (
                "mesh_n_low / mesh_n / mesh_n_high",
                Says::Numbers(vec![
                    config.mesh_n_low() as f64,
                    config.mesh_n() as f64,
                    config.mesh_n_high() as f64,
                ]),
            ),
        ],
    );

    let (params, thresholds) = wire::peer_score();
    assert_eq!(
        params.topics.len(),
        wire::TOPICS.len(),
        "{heading}: the page says both topics are scored alike"
    );
    let mut per_topic = params.topics.values();
    let topic = per_topic
        .next()
        .expect("wire::peer_score scores the topics")
        .clone();
    for other in per_topic {
        assert_eq!(
            format!("{other:?}"),
            format!("{topic:?}"),
            "{heading}: the page says both topics are scored alike"
        );
    }
    check_all(
        heading,
        "Parameter",
        1,
        vec![
            (
                "Score thresholds: gossip / publish / graylist",
                Says::Numbers(vec![
                    thresholds.gossip_threshold,
                    thresholds.publish_threshold,
                    thresholds.graylist_threshold,
                ]),
            ),
            (
                "Score thresholds: accept PX / opportunistic graft",
                Says::Numbers(vec![
                    thresholds.accept_px_threshold,
                    thresholds.opportunistic_graft_threshold,
                ]),
            ),
            ("Topic weight", Says::Numbers(vec![topic.topic_weight])),
            (
                "Time in mesh (P1)",
                Says::Numbers(vec![
                    topic.time_in_mesh_weight,
                    topic.time_in_mesh_quantum.as_secs_f64(),
                    topic.time_in_mesh_cap,
                ]),
            ),
            (
                "First message deliveries (P2)",
                Says::Numbers(vec![
                    topic.first_message_deliveries_weight,
                    topic.first_message_deliveries_decay,
                    topic.first_message_deliveries_cap,
                ]),
            ),
            (
                "Mesh message deliveries (P3) and mesh failure penalty (P3b)",
                Says::Numbers(vec![topic.mesh_message_deliveries_weight]),
            ),
            (
                "Invalid message deliveries (P4)",
                Says::Numbers(vec![
                    topic.invalid_message_deliveries_weight,
                    topic.invalid_message_deliveries_decay,
                ]),
            ),
        ],
    );
    assert_eq!(
        topic.mesh_failure_penalty_weight, topic.mesh_message_deliveries_weight,
        "{heading}: the page gives P3 and P3b one weight"
    );

    // What the page works out from them: one invalid message costs 20, two
    // 80, and only a third takes a peer below the graylist threshold.
    let p4 = |n: f64| n * n * topic.invalid_message_deliveries_weight * topic.topic_weight;
    let text = section(heading);
    let one = -p4(1.0);
    let two = -p4(2.0);
    assert!(
        text.contains(&format!("one costs that peer {one}")) && text.contains(&format!("= {two},")),
        "{heading}: one invalid message costs {one}, two cost {two}"
    );
    assert!(
        p4(2.0) >= thresholds.graylist_threshold && p4(3.0) < thresholds.graylist_threshold,
        "{heading}: the page says the third invalid message graylists a peer; with weight \
         {} and threshold {} that no longer holds",
        topic.invalid_message_deliveries_weight,
        thresholds.graylist_threshold
    );
    assert!(
        text.contains(&format!(
            "`decay_interval`, {} s",
            params.decay_interval.as_secs()
        )),
        "{heading}: the decay interval is {:?}",
        params.decay_interval
    );
}

#[test]
fn gossip_verdicts_match_screen_gossip() {
    let heading = "### 7.5 What every peer does with gossip";
    let t = table(heading, "Verdict");
    let rows = rows_by_key(heading, &t);
    let verdicts = [
        ("taken", Verdict::Taken(None)),
        ("stale", Verdict::Stale),
        (
            "rejected",
            Verdict::Rejected(Rejection::Malformed(String::new())),
        ),
        ("misrouted", Verdict::Misrouted(Kind::AdvertSync)),
        (
            "invalid_receipt",
            Verdict::InvalidReceipt(ReceiptError::BadSignature),
        ),
        ("refused", Verdict::Refused(Refused::UnelectedAward)),
    ];
    assert_eq!(
        rows.len(),
        verdicts.len(),
        "{heading}: the page lists {:?}",
        rows.keys()
    );
    for (name, verdict) in &verdicts {
        let row = rows
            .get(*name)
            .unwrap_or_else(|| panic!("{heading}: no row `{name}`"));
        check(
            heading,
            name,
            &row[2],
            &Says::Mentions(vec![format!("`{:?}`", verdict.acceptance())]),
        );
    }
    // The direct-only kinds, refused as misrouted; an advert let through.
    let key = Keypair::from_seed(1);
    let misrouted = &rows["misrouted"][1];
    for kind in [Kind::AdvertSync, Kind::AdvertBundle] {
        let message = sample(kind).expect("a sample of each direct-only kind");
        match screen_gossip(Some(Topic::Adverts), Ok(Envelope::seal(&key, NOW, message))) {
            Err(v @ Verdict::Misrouted(_)) => assert_eq!(v.label(), "misrouted"),
            other => panic!("screen_gossip let a gossiped {kind} through: {other:?}"),
        }
        assert!(
            misrouted.contains(&format!("`{}`", kind.name())),
            "{heading}, row `misrouted`: should name `{}`",
            kind.name()
        );
    }
    let advert = sample(Kind::Advert).expect("an advert");
    assert!(screen_gossip(Some(Topic::Adverts), Ok(Envelope::seal(&key, NOW, advert))).is_ok());
    // Each topic takes only its own kind: an advert on the receipts topic
    // is misrouted too.
    let advert = sample(Kind::Advert).expect("an advert");
    assert!(matches!(
        screen_gossip(Some(Topic::Receipts), Ok(Envelope::seal(&key, NOW, advert))),
        Err(Verdict::Misrouted(Kind::Advert))
    ));
}

#[test]
fn dht_keys_match_capability_keys() {
    let heading = "### 7.6 DHT keys";
    let t = table(heading, "Key");
    let on_page: BTreeSet<String> = t.rows.iter().map(|r| plain(&r[0])).collect();
    let everything = CapabilityAdvert {
        container_runtime: Some(ContainerRuntime::default()),
        gpus: vec![gpu()],
        adapters: vec![AdapterInfo {
            name: "wasm".into(),
            methods: Vec::new(),
            models: vec![ModelInfo {
                name: "<model>".into(),
                parameters: 1,
                quantization: "Q4_K_M".into(),
                context_length: 8192,
            }],
        }],
        orchestrator_candidate: true,
        ..CapabilityAdvert::default()
    };
    assert_eq!(
        on_page,
        capability_keys(&everything),
        "{heading}: the page's keys (left) differ from capability_keys for an advert with \
         every capability (right)"
    );
    assert!(capability_keys(&CapabilityAdvert::default()).is_empty());
    // A docker adapter alone provides cap/docker, as the page says.
    let docker_adapter = CapabilityAdvert {
        adapters: vec![AdapterInfo {
            name: "docker".into(),
            methods: Vec::new(),
            models: Vec::new(),
        }],
        ..CapabilityAdvert::default()
    };
    assert_eq!(
        capability_keys(&docker_adapter)
            .into_iter()
            .collect::<Vec<_>>(),
        ["cap/docker"],
        "{heading}: an adapter named docker"
    );
}

#[test]
fn defaults_and_limits_match_the_constants() {
    let heading = "## 18. Defaults";
    let t = table(heading, "Setting");
    let rows = rows_by_key(heading, &t);
    let n = |v: u64| v as f64;
    let expected: Vec<(&str, Vec<f64>)> = vec![
        ("PROTOCOL_VERSION", vec![f64::from(PROTOCOL_VERSION)]),
        ("MAX_CLOCK_SKEW_MS", vec![n(MAX_CLOCK_SKEW_MS)]),
        (
            "MAX_DIRECT_MESSAGE_AGE_MS",
            vec![n(MAX_DIRECT_MESSAGE_AGE_MS)],
        ),
        ("MAX_DECODE_BYTES", vec![n(MAX_DECODE_BYTES as u64)]),
        (
            "Job limits: names / params / timeout / log / inline outputs / files / text",
            vec![
                n(limits::MAX_NAME_BYTES as u64),
                n(limits::MAX_PARAMS_BYTES as u64),
                n(limits::MAX_TIMEOUT_MS),
                n(limits::MAX_LOG_BYTES as u64),
                n(limits::MAX_INLINE_OUTPUT_BYTES as u64),
                n(limits::MAX_OUTPUT_FILES as u64),
                n(limits::MAX_TEXT_BYTES as u64),
            ],
        ),
        (
            "MAX_LOG_CHUNK_BYTES / MAX_OUTPUT_CHUNK_BYTES",
            vec![
                n(limits::MAX_LOG_CHUNK_BYTES as u64),
                n(limits::MAX_OUTPUT_CHUNK_BYTES as u64),
            ],
        ),
        (
            "MAX_OUTPUT_NAME_BYTES",
            vec![n(MAX_OUTPUT_NAME_BYTES as u64)],
        ),
        ("REJOIN_ADVERT_DELAY_MS", vec![n(REJOIN_ADVERT_DELAY_MS)]),
        (
            "MAX_SYNC_KNOWN / KNOWN_ADVERT_MAX_BYTES",
            vec![n(MAX_SYNC_KNOWN as u64), n(KNOWN_ADVERT_MAX_BYTES as u64)],
        ),
        (
            "MAX_BUNDLE_ADVERTS / MAX_BUNDLE_BYTES",
            vec![n(MAX_BUNDLE_ADVERTS as u64), n(MAX_BUNDLE_BYTES as u64)],
        ),
        (
            "SYNC_PEERS_PER_JOIN / SYNC_ANSWER_INTERVAL",
            vec![n(SYNC_PEERS_PER_JOIN as u64), n(secs(SYNC_ANSWER_INTERVAL))],
        ),
        ("REPUTATION_SCALE", vec![f64::from(REPUTATION_SCALE)]),
    ];
    for (key, want) in expected {
        let row = rows
            .get(key)
            .unwrap_or_else(|| panic!("{heading}: no row `{key}`; the code has {want:?}"));
        check(heading, key, &row[1], &Says::Numbers(want));
    }
    // MAX_ADVERT_ITEMS: the first number (CPU features have their own bound).
    let row = rows
        .get("MAX_ADVERT_ITEMS")
        .unwrap_or_else(|| panic!("{heading}: no row `MAX_ADVERT_ITEMS`"));
    assert_eq!(
        numbers(&row[1]).first().copied(),
        Some(MAX_ADVERT_ITEMS as f64),
        "{heading}, row `MAX_ADVERT_ITEMS`: the page says `{}`; the code says {MAX_ADVERT_ITEMS}",
        row[1]
    );

    // Limits written in the message sections.
    for (heading, written) in [
        (
            "### 8.8 `JobResult` (kind `result`)",
            format!("`MAX_OUTPUT_NAME_BYTES` ({MAX_OUTPUT_NAME_BYTES})"),
        ),
        (
            "### 8.11 `LogChunk` (kind `log`)",
            format!(
                "`MAX_LOG_CHUNK_BYTES` ({})",
                grouped(limits::MAX_LOG_CHUNK_BYTES as u64)
            ),
        ),
        (
            "### 8.12 `FetchOutput` (kind `fetch`)",
            format!(
                "`MAX_OUTPUT_CHUNK_BYTES` ({})",
                grouped(limits::MAX_OUTPUT_CHUNK_BYTES as u64)
            ),
        ),
    ] {
        assert!(
            section(heading).contains(&written),
            "{heading}: expected `{written}`, as the code has it"
        );
    }
}

#[test]
fn the_readers_read_what_they_should() {
    assert_eq!(numbers("1,310,976 bytes"), [1_310_976.0]);
    assert_eq!(numbers("−10 / −50 / -80"), [-10.0, -50.0, -80.0]);
    assert_eq!(
        numbers("weight 0.01 per 1 s, `quic-v1` P3b 20"),
        [0.01, 1.0, 20.0]
    );
    assert_eq!(grouped(1_312_000), "1,312,000");
    assert_eq!(grouped(255), "255");
    assert_eq!(ticked("`a`, `b` c"), ["a", "b"]);
    assert_eq!(cells("| a | `b` |"), ["a", "`b`"]);
}
