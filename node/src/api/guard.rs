//! What every request passes before it reaches a handler, so that no route
//! can forget it: the `Host` check (a page on another site whose name the
//! attacker points at 127.0.0.1, DNS rebinding, must not read the API),
//! cross-origin requests refused (no `Access-Control-Allow-*` is ever sent,
//! and a request whose `Origin` is another site is answered 403), and the
//! token on every route but the dashboard's page and assets.
//!
//! The token is `Authorization: Bearer <api.token>` (the CLI, the MCP server,
//! the OpenAI and Ollama clients), or the session cookie of a dashboard
//! login. A browser gets that cookie as Jupyter's users do: the node prints
//! a one-time link `http://127.0.0.1:PORT/?token=…` (at start, and whenever
//! `modchain dashboard` asks for one); opening it swaps the login token for
//! an `HttpOnly; SameSite=Strict` cookie and the token stops working, so a
//! link left in a log or a browser history opens nothing.

use super::edge::{ApiFail, ApiState};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Login links handed out and not yet opened; the oldest is forgotten
/// first, so a caller that mints links in a loop holds no memory.
const MAX_PENDING_LOGINS: usize = 8;
/// Dashboard sessions held at once; the oldest ends first.
const MAX_SESSIONS: usize = 32;

/// The API's credentials and the names it answers to.
#[derive(Debug)]
pub(crate) struct Access {
    /// The bearer token, also in `api.token`.
    token: String,
    /// The API's own base URL, `http://127.0.0.1:PORT`.
    base_url: String,
    /// `Host` values the API answers: its address and `localhost`, each
    /// with its port (lower case).
    own_hosts: Vec<String>,
    /// Names from `api_allowed_hosts`, with any port (lower case).
    named_hosts: Vec<String>,
    /// The cookie's name, with the port in it: browsers share cookies
    /// between ports of one host, and two nodes on one machine must not
    /// overwrite each other's session.
    cookie: String,
    logins: Mutex<VecDeque<String>>,
    sessions: Mutex<VecDeque<String>>,
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Takes `secret` out of `list` when it is there.
fn take(list: &Mutex<VecDeque<String>>, secret: &str) -> bool {
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    // Every entry is compared, so the time taken says nothing of which matched.
    let found =
        list.iter().enumerate().fold(
            None,
            |hit, (i, s)| if same_secret(s, secret) { Some(i) } else { hit },
        );
    found.map(|i| list.remove(i)).is_some()
}

fn holds(list: &Mutex<VecDeque<String>>, secret: &str) -> bool {
    let list = list.lock().unwrap_or_else(|e| e.into_inner());
    list.iter()
        .fold(false, |hit, s| same_secret(s, secret) | hit)
}

fn push_bounded(list: &Mutex<VecDeque<String>>, secret: String, cap: usize) {
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    while list.len() >= cap {
        list.pop_front();
    }
    list.push_back(secret);
}

impl Access {
    /// `local` is the address the API is bound to; `named` the extra host
    /// names the operator allows.
    pub(crate) fn new(token: String, local: SocketAddr, named: &[String]) -> Self {
        let port = local.port();
        let mut own_hosts = vec![local.to_string().to_ascii_lowercase()];
        if local.ip().is_loopback() {
            own_hosts.push(format!("localhost:{port}"));
        }
        Access {
            token,
            base_url: format!("http://{local}"),
            own_hosts,
            named_hosts: named
                .iter()
                .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
            cookie: format!("modchain_session_{port}"),
            logins: Mutex::new(VecDeque::new()),
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether `host` (a `Host` value, or an `Origin`'s authority) names
    /// this API.
    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.own_hosts.contains(&host) {
            return true;
        }
        // A configured name, with or without a port (a reverse proxy in
        // front may use its own).
        let name = match host.rsplit_once(':') {
            Some((name, port))
                if !name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host.as_str(),
        };
        self.named_hosts.iter().any(|n| n == name)
    }

    /// A new one-time login link for the dashboard.
    pub(crate) fn login_url(&self) -> Result<String, super::ApiError> {
        let login = super::random_token()?;
        let url = format!("{}/?token={login}", self.base_url);
        push_bounded(&self.logins, login, MAX_PENDING_LOGINS);
        Ok(url)
    }

    /// Swaps a login token for a new session id; `None` when the token is
    /// not one handed out, or was used already.
    fn redeem(&self, login: &str) -> Option<String> {
        if !take(&self.logins, login) {
            return None;
        }
        let session = super::random_token().ok()?;
        push_bounded(&self.sessions, session.clone(), MAX_SESSIONS);
        Some(session)
    }

    /// Whether the request carries the bearer token or a live session.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        if bearer.is_some_and(|b| same_secret(b, &self.token)) {
            return true;
        }
        self.session_of(headers)
            .is_some_and(|s| holds(&self.sessions, s))
    }

    /// The value of this API's session cookie, if the request has one.
    fn session_of<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.trim())
    }
}

/// The error answer for `path`: OpenAI's shape on its routes, ours elsewhere.
fn refuse(path: &str, status: StatusCode, message: String) -> Response {
    if path.starts_with("/v1/") || path == "/v1" {
        super::openai::refusal(status, message)
    } else {
        ApiFail(status, message).into_response()
    }
}

/// Routes anyone on this machine may load without the token: the
/// dashboard's page and its static files, which hold no data.
fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/dashboard/")
}

pub(crate) const UNAUTHORIZED: &str = "this call needs the API token: `Authorization: Bearer <token>` with the token in api.token in the node's data directory, or a dashboard session (open the link `modchain dashboard` prints)";

/// Runs before every route: Host, Origin, then the token.
pub(super) async fn check(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let access = &state.access;
    let path = request.uri().path().to_string();
    let headers = request.headers();
    // HTTP/1.1 sends `Host`; HTTP/2 the URI's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if access.allows_host(&h) => {}
        other => {
            return refuse(
                &path,
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this is the modchain API at {}, not `{}`: requests must name it in `Host` \
                     (a page on another site pointing its name at this machine is refused); \
                     to reach it under another name, list the name in api_allowed_hosts in config.toml",
                    access.base_url,
                    other.unwrap_or_default()
                ),
            );
        }
    }
    // Browsers send `Origin` on cross-origin requests (and on same-origin
    // POSTs); only this API's own origin is served.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            })
            .is_some_and(|authority| access.allows_host(authority));
        if !own {
            return refuse(
                &path,
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused: the API serves only its own pages (CORS is not offered)"
                    .into(),
            );
        }
    }
    if !is_public(&path) && !access.authorized(headers) {
        return refuse(&path, StatusCode::UNAUTHORIZED, UNAUTHORIZED.into());
    }
    next.run(request).await
}

/// `GET /?token=…`: the login link. The token is swapped for a session
/// cookie and the browser sent on to `/`, so the token leaves the address
/// bar and the history; opened a second time, the link is refused.
pub(super) fn login(state: &ApiState, token: &str) -> Response {
    let access = &state.access;
    let Some(session) = access.redeem(token) else {
        return ApiFail(
            StatusCode::FORBIDDEN,
            "this login link was used already or is not this node's (a link works once, and a restarted node forgets its links): run `modchain dashboard` for a new one".into(),
        )
        .into_response();
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict",
        access.cookie
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, v);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(named: &[&str]) -> Access {
        let named: Vec<String> = named.iter().map(|s| s.to_string()).collect();
        Access::new(
            "t".repeat(64),
            "127.0.0.1:7777".parse().expect("addr"),
            &named,
        )
    }

    #[test]
    fn hosts_are_the_address_localhost_and_configured_names() {
        let a = access(&["Node.Example"]);
        for ok in [
            "127.0.0.1:7777",
            "localhost:7777",
            "LOCALHOST:7777",
            "node.example",
            "node.example:443",
        ] {
            assert!(a.allows_host(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1:7778",
            "127.0.0.1",
            "evil.example:7777",
            "localhost",
            "",
            "[::1]:7777",
            "node.example.evil:1",
        ] {
            assert!(!a.allows_host(bad), "{bad}");
        }
    }

    #[test]
    fn a_login_token_works_once_and_sessions_are_bounded() {
        let a = access(&[]);
        let url = a.login_url().expect("url");
        let login = url.rsplit("token=").next().expect("token").to_string();
        assert!(url.starts_with("http://127.0.0.1:7777/?token="));
        let session = a.redeem(&login).expect("first use");
        assert!(a.redeem(&login).is_none(), "second use");
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; modchain_session_7777={session}");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&cookie).expect("ascii"),
        );
        assert!(a.authorized(&headers));
        // Old links are forgotten as new ones are made.
        let first = a.login_url().expect("url");
        for _ in 0..MAX_PENDING_LOGINS {
            a.login_url().expect("url");
        }
        let first = first.rsplit("token=").next().expect("token");
        assert!(a.redeem(first).is_none());
        for _ in 0..MAX_SESSIONS {
            let l = a.login_url().expect("url");
            a.redeem(l.rsplit("token=").next().expect("token"))
                .expect("session");
        }
        assert!(!a.authorized(&headers), "the oldest session ended");
    }

    #[test]
    fn bearer_token_is_checked() {
        let a = access(&[]);
        let mut h = HeaderMap::new();
        assert!(!a.authorized(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(!a.authorized(&h));
        let good = format!("Bearer {}", "t".repeat(64));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&good).expect("ascii"),
        );
        assert!(a.authorized(&h));
    }
}
