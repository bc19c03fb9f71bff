//! The local API as a door and as a contract, against a real `modchain`
//! node on 127.0.0.1 (with a bootstrap peer):
//!
//! - it answers only requests that name it in `Host` (DNS rebinding: a page
//!   whose own name resolves to 127.0.0.1 is refused), refuses cross-origin
//!   requests and never grants CORS, and answers nothing but the
//!   dashboard's page and assets without the token or a dashboard session;
//!   the one-time login link works once;
//! - schemathesis, a property-based tester driven by the OpenAPI document
//!   the node serves, finds no schema-valid request refused, no
//!   schema-invalid one accepted, no undocumented status, content type or
//!   body, and no server error.
//!
//! Needs schemathesis in the tests' venv (`.ci/run` installs it; or
//! `pip install 'schemathesis==4.*'`); without it the test fails and says so.

mod common;

use common::{TestNet, http_bare};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What a node of these tests answers to besides its address.
const CONFIGURED_NAME: &str = "modchain.test";

/// Examples per operation: enough to reach each constraint, few enough that
/// the run takes about a minute.
const MAX_EXAMPLES: &str = "150";

fn allow_configured_name(dir: &Path) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml written by init");
    assert!(text.contains("api_allowed_hosts = []"), "{text}");
    let text = text.replace(
        "api_allowed_hosts = []",
        &format!("api_allowed_hosts = [\"{CONFIGURED_NAME}\"]"),
    );
    std::fs::write(&path, text).expect("write config.toml");
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[test]
fn the_api_answers_only_its_own_host_and_origin_and_only_with_the_token() {
    let net = TestNet::start_with("api-access", 1, |_, dir| allow_configured_name(dir));
    let node = &net.nodes[0];
    let url = node.url().expect("api.url");
    let port = url.rsplit(':').next().expect("port").to_string();
    let auth = format!("Bearer {}", node.token());
    let with_token = [("Authorization", auth.as_str())];

    // Reading needs the token, on every route family; with it, the same
    // request succeeds.
    for path in [
        "/health",
        "/api/v1/stats",
        "/api/v1/jobs",
        "/api/v1/receipts",
        "/api/v1/events?x",
        "/api/v1/openapi.json",
        "/metrics",
        "/v1/models",
        "/api/tags",
        "/no/such/route",
    ] {
        let (status, _, body) = http_bare(&url, "GET", path, &[], None).expect("answered");
        assert_eq!(status, 401, "GET {path} without the token: {body}");
        assert!(body.contains("api.token"), "GET {path}: {body}");
        if path == "/api/v1/events?x" || path == "/no/such/route" {
            continue;
        }
        let (status, _, body) = http_bare(&url, "GET", path, &with_token, None).expect("answered");
        assert_eq!(status, 200, "GET {path} with the token: {body}");
    }
    let (status, _, body) = http_bare(&url, "GET", "/v1/models", &[], None).expect("answered");
    assert!(
        status == 401 && body.contains("invalid_api_key"),
        "OpenAI's routes refuse in OpenAI's shape: {body}"
    );
    let (status, _, _) = http_bare(
        &url,
        "GET",
        "/api/v1/stats",
        &[("Authorization", "Bearer 0000")],
        None,
    )
    .expect("answered");
    assert_eq!(status, 401, "a wrong token");
    // The dashboard's page and assets hold no data: no token needed.
    for path in ["/", "/dashboard/app.js", "/dashboard/style.css"] {
        let (status, _, _) = http_bare(&url, "GET", path, &[], None).expect("answered");
        assert_eq!(status, 200, "GET {path}");
    }

    // A request that names another host is refused, token or not: what a
    // DNS-rebinding page would send.
    let evil = format!("evil.example:{port}");
    for host in [evil.as_str(), "127.0.0.1", "localhost:1"] {
        let (status, _, body) = http_bare(
            &url,
            "GET",
            "/api/v1/stats",
            &[("Host", host), with_token[0]],
            None,
        )
        .expect("answered");
        assert_eq!(status, 421, "Host {host}: {body}");
        assert!(body.contains("api_allowed_hosts"), "{body}");
    }
    let (status, _, _) =
        http_bare(&url, "GET", "/", &[("Host", evil.as_str())], None).expect("answered");
    assert_eq!(status, 421, "even the page is refused under another name");
    // Its own names, and the configured one.
    let local = format!("localhost:{port}");
    let named = format!("{CONFIGURED_NAME}:{port}");
    for host in [local.as_str(), named.as_str(), CONFIGURED_NAME] {
        let (status, _, body) = http_bare(
            &url,
            "GET",
            "/api/v1/stats",
            &[("Host", host), with_token[0]],
            None,
        )
        .expect("answered");
        assert_eq!(status, 200, "Host {host}: {body}");
    }

    // CORS refused: a preflight gets no permission, and a cross-origin
    // request is refused even with the token; no answer ever carries an
    // Access-Control-Allow-* header.
    for (method, path, origin) in [
        ("OPTIONS", "/api/v1/jobs", "http://evil.example"),
        ("GET", "/api/v1/stats", "http://evil.example"),
        ("POST", "/api/v1/jobs", "null"),
        ("OPTIONS", "/api/v1/jobs", url.as_str()),
    ] {
        let (status, head, body) = http_bare(
            &url,
            method,
            path,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
                with_token[0],
            ],
            (method == "POST").then_some("{}"),
        )
        .expect("answered");
        assert!(
            !head.contains("access-control-allow"),
            "{method} {path} from {origin} grants CORS:\n{head}"
        );
        assert!(
            status >= 400,
            "{method} {path} from {origin}: {status} {body}"
        );
        if origin != url {
            assert_eq!(status, 403, "{method} {path} from {origin}: {body}");
        }
    }
    // The API's own origin is served (the dashboard's POSTs carry it).
    let (status, _, body) = http_bare(
        &url,
        "GET",
        "/api/v1/stats",
        &[("Origin", url.as_str()), with_token[0]],
        None,
    )
    .expect("answered");
    assert_eq!(status, 200, "{body}");

    // The one-time login link: `modchain dashboard` prints it; opened, it
    // sets an HttpOnly, SameSite=Strict session cookie and sends the
    // browser to `/`; opened again, it is refused.
    let out = node.cli(&["dashboard"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = link
        .strip_prefix(&url)
        .expect("a link to this node")
        .to_string();
    assert!(path.starts_with("/?token="), "{link}");
    let (status, head, _) = http_bare(&url, "GET", &path, &[], None).expect("answered");
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/"), "{head}");
    let set_cookie = header(&head, "set-cookie").expect("a session cookie");
    assert!(
        set_cookie.contains("httponly") && set_cookie.contains("samesite=strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let (status, _, body) = http_bare(&url, "GET", &path, &[], None).expect("answered");
    assert_eq!(status, 403, "the link opened twice: {body}");
    assert!(body.contains("modchain dashboard"), "{body}");
    // The cookie is the session (the head comes lower-cased, as the
    // session id, hex, already is).
    let (status, _, body) =
        http_bare(&url, "GET", "/api/v1/stats", &[("Cookie", &cookie)], None).expect("answered");
    assert_eq!(status, 200, "with the session cookie: {body}");
    let forged = format!("{cookie}0");
    let (status, _, _) =
        http_bare(&url, "GET", "/api/v1/stats", &[("Cookie", &forged)], None).expect("answered");
    assert_eq!(status, 401, "a forged session");
}

fn schemathesis() -> PathBuf {
    let python = PathBuf::from(common::test_python());
    let bin = python
        .parent()
        .map(|d| d.join("schemathesis"))
        .unwrap_or_else(|| PathBuf::from("schemathesis"));
    assert!(
        bin.is_file(),
        "the API contract test needs schemathesis beside {}: .ci/run installs it in \
         ~/.cache/modchain-venv (pip install 'schemathesis==4.*')",
        python.display()
    );
    bin
}

#[test]
fn schemathesis_finds_nothing_the_document_and_the_server_disagree_on() {
    let st = schemathesis();
    let net = TestNet::start("api-contract", 1);
    let node = &net.nodes[0];
    let url = node.url().expect("api.url");
    // Refusals a schema cannot foresee are documented statuses: 404 (no
    // provider offers the adapter or model) is accepted by default; 422
    // (the adapter refuses its params, e.g. a module that does not
    // compile) is added here, as the document says.
    let config = net.root.join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"#,
    )
    .expect("write schemathesis.toml");
    let t0 = Instant::now();
    let out = Command::new(&st)
        .current_dir(&net.root)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{url}/api/v1/openapi.json"))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", node.token()),
        ])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,positive_data_acceptance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            // A stream that runs until the client leaves: nothing for a
            // request-and-answer tester (the access test reads it).
            "--exclude-path",
            "/api/v1/events",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Its summary: operations, phases, test cases generated.
    let summary = stdout
        .find("SUMMARY")
        .map_or(stdout.as_ref(), |at| &stdout[at..]);
    eprintln!("schemathesis ran {:?}:\n{summary}", t0.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found requests on which the document and the server disagree:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log_tail(40)
    );
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "schemathesis tested nothing:\n{stdout}"
    );
}
