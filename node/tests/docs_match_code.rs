//! The metric tables of `docs/operators.md` against the metrics the code
//! registers, so that neither drifts from the other unnoticed.
//!
//! The node is a binary, so a test cannot build its registry; instead the
//! registrations are read from the source text: every `r.register(..)` and
//! `r.register_with_unit(..)` in `node/src/metrics.rs` (and, for the
//! bootstrap peer's table, `bootstrap/src/peer.rs`), with the prefix of the
//! sub-registry `r`, the unit, the metric's type (from its declaration) and
//! its labels (the fields of its label struct). The name a scrape shows is
//! then prefix, name, unit, and `_total` for a counter or `_info` for an
//! info, as prometheus-client writes them.

use modchain_net::driver::Verdict;
use modchain_protocol::{Kind, Rejection};
use std::collections::{BTreeMap, BTreeSet};

const OPERATORS_MD: &str = include_str!("../../docs/operators.md");
const NODE_METRICS_RS: &str = include_str!("../src/metrics.rs");
const BOOTSTRAP_PEER_RS: &str = include_str!("../../bootstrap/src/peer.rs");

/// A metric as a scrape shows it: its type and label names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Metric {
    kind: String,
    labels: BTreeSet<String>,
}

// ---- Reading the source -------------------------------------------------------

/// The index just past the `)` that closes the call whose `(` is at
/// `open`, skipping string literals.
fn close_of(src: &str, open: usize) -> usize {
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}")
}

/// The arguments of the call whose `(` is at `open`, split at top-level commas.
fn arguments(src: &str, open: usize) -> Vec<String> {
    let end = close_of(src, open);
    let inner = &src[open + 1..end - 1];
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut current = String::new();
    for c in inner.chars() {
        if in_string {
            current.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The string literals in `text`, in order.
fn literals(text: &str) -> Vec<String> {
    text.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The text of `let {name} = …;` in `src`.
fn declaration<'a>(file: &str, src: &'a str, name: &str) -> &'a str {
    let needle = format!("let {name} = ");
    let at = src
        .find(&needle)
        .unwrap_or_else(|| panic!("{file}: no `{needle}` declaring the metric `{name}`"));
    let rest = &src[at + needle.len()..];
    let end = rest
        .find(";\n")
        .unwrap_or_else(|| panic!("{file}: `{needle}` does not end"));
    &rest[..end]
}

/// The field names of `struct {name} { … }` in `src`.
fn struct_fields(file: &str, src: &str, name: &str) -> BTreeSet<String> {
    let needle = format!("struct {name} {{");
    let at = src
        .find(&needle)
        .unwrap_or_else(|| panic!("{file}: no `{needle}` for a label set"));
    let rest = &src[at + needle.len()..];
    let end = rest
        .find('}')
        .unwrap_or_else(|| panic!("{file}: `{needle}` does not end"));
    rest[..end]
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(field, _)| field.trim().trim_start_matches("pub ").to_string())
        .collect()
}

/// Every metric registered on the sub-registry `r` in `src`, by the name a
/// scrape shows.
fn registered(file: &str, src: &str) -> BTreeMap<String, Metric> {
    let prefix_call = "let r = registry.sub_registry_with_prefix(";
    let at = src
        .find(prefix_call)
        .unwrap_or_else(|| panic!("{file}: no `{prefix_call}`: where do its metrics go?"));
    let prefix = arguments(src, at + prefix_call.len() - 1)
        .first()
        .and_then(|a| literals(a).into_iter().next())
        .unwrap_or_else(|| panic!("{file}: the sub-registry's prefix is no literal"));

    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(found) = src[from..].find("r.register") {
        let at = from + found;
        from = at + 1;
        let rest = &src[at..];
        let before = src[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let (with_unit, call) = if rest.starts_with("r.register_with_unit(") {
            (true, "r.register_with_unit(")
        } else if rest.starts_with("r.register(") {
            (false, "r.register(")
        } else {
            continue;
        };
        let args = arguments(src, at + call.len() - 1);
        let want = if with_unit { 4 } else { 3 };
        assert_eq!(
            args.len(),
            want,
            "{file}: cannot read the call `{}`",
            &rest[..rest.len().min(80)]
        );
        let name = literals(&args[0])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{file}: a metric's name is no literal: {}", args[0]));
        let unit = with_unit.then(|| {
            args[2]
                .trim_start_matches("Unit::")
                .to_ascii_lowercase()
                .to_string()
        });
        let metric = &args[args.len() - 1];
        let (kind, labels) = if metric.starts_with("Info::") {
            // `Info::new(vec![("label".to_string(), value), …])`
            let open = metric
                .find('[')
                .unwrap_or_else(|| panic!("{file}: cannot read the labels of `{metric}`"));
            let labels = arguments(metric, open)
                .iter()
                .filter_map(|pair| arguments(pair, 0).into_iter().next())
                .filter_map(|label| literals(&label).into_iter().next())
                .collect();
            ("info".to_string(), labels)
        } else {
            let var = metric.trim_end_matches(".clone()");
            let decl = declaration(file, src, var);
            let kind = if decl.contains("Histogram") {
                "histogram"
            } else if decl.contains("Counter") {
                "counter"
            } else if decl.contains("Gauge") {
                "gauge"
            } else {
                panic!("{file}: cannot tell the type of `{var}` from `{decl}`")
            };
            let labels = match decl.strip_prefix("Family::<") {
                Some(rest) => {
                    let label_set = rest.split(',').next().unwrap_or_default().trim();
                    struct_fields(file, src, label_set)
                }
                None => BTreeSet::new(),
            };
            (kind.to_string(), labels)
        };
        let mut shown = format!("{prefix}_{name}");
        if let Some(unit) = unit {
            shown.push('_');
            shown.push_str(&unit);
        }
        match kind.as_str() {
            "counter" => shown.push_str("_total"),
            "info" => shown.push_str("_info"),
            _ => {}
        }
        assert!(
            out.insert(shown.clone(), Metric { kind, labels }).is_none(),
            "{file}: `{shown}` registered twice"
        );
    }
    out
}

// ---- Reading the page ---------------------------------------------------------

/// The backticked spans of a cell, in order.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The `n`th table (from 0) with the header `| Metric | Type | Labels | Meaning |`
/// in the section `## Metrics`: its rows' cells.
fn metric_table(n: usize) -> Vec<Vec<String>> {
    let start = OPERATORS_MD
        .find("\n## Metrics\n")
        .expect("docs/operators.md has a `## Metrics` section");
    let text = &OPERATORS_MD[start + 1..];
    let end = text[3..].find("\n## ").map_or(text.len(), |e| e + 3);
    let text = &text[..end];
    let mut found = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim_start().starts_with('|') {
            lines.push(line);
        } else if !lines.is_empty() {
            if cells(lines[0]) == ["Metric", "Type", "Labels", "Meaning"] {
                found.push(lines.iter().skip(2).map(|l| cells(l)).collect());
            }
            lines.clear();
        }
    }
    found.into_iter().nth(n).unwrap_or_else(|| {
        panic!("docs/operators.md, ## Metrics: no table {n} with the columns Metric | Type | Labels | Meaning")
    })
}

/// The label names of a Labels cell: the backticked names outside
/// parentheses (inside them are example values).
fn label_names(cell: &str) -> BTreeSet<String> {
    let mut outside = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    ticked(&outside).into_iter().collect()
}

/// The metrics a table documents, by name; a row may name several.
fn documented(table: &[Vec<String>]) -> BTreeMap<String, (Metric, Vec<String>)> {
    let mut out = BTreeMap::new();
    for row in table {
        let metric = Metric {
            kind: row[1].clone(),
            labels: label_names(&row[2]),
        };
        for name in ticked(&row[0]) {
            assert!(
                out.insert(name.clone(), (metric.clone(), row.clone()))
                    .is_none(),
                "docs/operators.md: `{name}` has two rows"
            );
        }
    }
    out
}

fn compare(table_name: &str, file: &str, table: &[Vec<String>], code: &BTreeMap<String, Metric>) {
    let page = documented(table);
    for (name, (metric, row)) in &page {
        let Some(registered) = code.get(name) else {
            panic!(
                "docs/operators.md, {table_name}: `{name}` is not registered in {file} \
                 (it registers {:?})",
                code.keys().collect::<Vec<_>>()
            );
        };
        assert_eq!(
            metric.kind, registered.kind,
            "docs/operators.md, {table_name}, row {row:?}: type `{}`, but {file} registers \
             `{name}` as a {}",
            metric.kind, registered.kind
        );
        assert_eq!(
            metric.labels, registered.labels,
            "docs/operators.md, {table_name}, row {row:?}: labels {:?}, but {file} gives \
             `{name}` the labels {:?}",
            metric.labels, registered.labels
        );
    }
    for name in code.keys() {
        assert!(
            page.contains_key(name),
            "docs/operators.md, {table_name}: {file} registers `{name}` ({:?}), which the \
             table does not list",
            code[name]
        );
    }
}

// ---- The tests ----------------------------------------------------------------

#[test]
fn the_nodes_metric_table_matches_its_registry() {
    let code = registered("node/src/metrics.rs", NODE_METRICS_RS);
    assert!(
        code.len() >= 20,
        "node/src/metrics.rs: only {} metrics read; has the registration changed shape? {code:?}",
        code.len()
    );
    compare(
        "the node's table",
        "node/src/metrics.rs",
        &metric_table(0),
        &code,
    );
}

#[test]
fn the_rejection_reasons_are_those_the_node_counts() {
    // The reasons a node starts at zero: Rejection::LABELS and what the
    // source chains to them.
    // (`for reason in Rejection::LABELS {` when it adds none.)
    let chain = "Rejection::LABELS.into_iter().chain(";
    let mut reasons: BTreeSet<String> = Rejection::LABELS.iter().map(|s| s.to_string()).collect();
    if let Some(at) = NODE_METRICS_RS.find(chain) {
        let extra = arguments(NODE_METRICS_RS, at + chain.len() - 1);
        reasons.extend(extra.iter().flat_map(|a| literals(a)));
    } else {
        assert!(
            NODE_METRICS_RS.contains("for reason in Rejection::LABELS {"),
            "node/src/metrics.rs: which reasons does it start at zero?"
        );
    }

    let table = metric_table(0);
    let row = table
        .iter()
        .find(|r| ticked(&r[0]).contains(&"modchain_messages_rejected_total".to_string()))
        .expect("the node's table has a row for modchain_messages_rejected_total");
    let listed = row[3].split(';').next().unwrap_or_default();
    let on_page: BTreeSet<String> = ticked(listed).into_iter().collect();
    assert_eq!(
        on_page, reasons,
        "docs/operators.md, modchain_messages_rejected_total: the reasons listed (left) differ \
         from Rejection::LABELS and those node/src/metrics.rs adds (right)"
    );
}

#[test]
fn the_bootstrap_peers_metric_table_matches_its_registry() {
    let code = registered("bootstrap/src/peer.rs", BOOTSTRAP_PEER_RS);
    let table = metric_table(1);
    compare(
        "the bootstrap peer's table",
        "bootstrap/src/peer.rs",
        &table,
        &code,
    );
    // Its rejection reasons: the rejections, plus the verdict on a gossiped
    // direct-only kind.
    let misrouted = Verdict::Misrouted(Kind::AdvertSync).label();
    let row = table
        .iter()
        .find(|r| ticked(&r[0]).contains(&"modchain_bootstrap_rejected_messages_total".to_string()))
        .expect("the bootstrap peer's table has a row for its rejected messages");
    assert!(
        row[3].contains(&format!("`{misrouted}`")),
        "docs/operators.md, modchain_bootstrap_rejected_messages_total: should name the \
         `{misrouted}` reason"
    );
}

#[test]
fn the_source_reader_reads_calls() {
    let src = r#"f("a (b)", g(1, 2), [3, 4]) + x"#;
    assert_eq!(arguments(src, 1), [r#""a (b)""#, "g(1, 2)", "[3, 4]"]);
    assert_eq!(literals(r#"x("a", "b")"#), ["a", "b"]);
    assert_eq!(
        label_names("`direction` (`in`, `out`), `kind`"),
        ["direction", "kind"].map(String::from).into()
    );
}
