//! Who may call the planner API: bearer tokens, stored hashed, each with a
//! role (docs/security.md).
//!
//! - `planner`: every route.
//! - `customer:<ID>`: its own documents (`/v1/documents/{id}` of a document
//!   of that customer), its own rejections (`/v1/rejections`, filtered to
//!   it) and the supplier's commit to it (`/v1/commits`, filtered to it),
//!   nothing else: no demand, coverage, supply or stream.
//!
//! The tokens file is JSON Lines, one token per line, as `forecastctl tokens
//! generate` prints it (`>> tokens.jsonl` adds one); blank lines and lines
//! starting with `#` are skipped:
//!
//! ```text
//! {"name":"alice","role":"planner","sha256":"<hex of SHA-256 of the token>"}
//! ```
//!
//! Only the SHA-256 of a token is kept: tokens are 256 random bits, so a
//! fast hash is enough (nothing to guess), and the file reveals none. With
//! no tokens file the API answers anyone who reaches it, so the planner
//! then refuses to serve on anything but loopback (unless
//! `--insecure-open-api` says so), and answers only requests whose `Host`
//! is a loopback name or one of `--allowed-host` (a web page on another
//! site that rebinds its name to 127.0.0.1 cannot read it); with a tokens
//! file, every route but the dashboard's static files, `/openapi.json`,
//! `/healthz` and `/readyz` needs a token, and `/metrics` a planner's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Planner,
    /// Its own documents and rejections.
    Customer(String),
}

impl Role {
    /// Parses `planner` or `customer:<ID>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "planner" => Ok(Role::Planner),
            Some(("customer", id)) if !id.is_empty() => Ok(Role::Customer(id.to_owned())),
            _ => Err(format!(
                "`{s}` is not a role: `planner` or `customer:<CUSTOMER_ID>`"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Planner => f.write_str("planner"),
            Role::Customer(id) => write!(f, "customer:{id}"),
        }
    }
}

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The caller when no tokens are configured.
    fn anonymous() -> Self {
        Principal {
            name: "anonymous".into(),
            role: Role::Planner,
        }
    }

    /// The customer whose data alone this caller may read, if it is one.
    pub fn customer(&self) -> Option<&str> {
        match &self.role {
            Role::Planner => None,
            Role::Customer(id) => Some(id),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it (for logs; never the token).
    pub name: String,
    /// `planner` or `customer:<ID>`.
    pub role: String,
    /// SHA-256 of the token, hexadecimal.
    pub sha256: String,
}

/// Why a tokens file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tokens file {path}, line {line}: {problem}")]
    Entry {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("no randomness for a new token: {0}")]
    Random(String),
    #[error(
        "refusing to serve the planner API on {0} without --tokens: anyone who reaches it would read every customer's demand and verdicts; give --tokens FILE, serve on 127.0.0.1, or say --insecure-open-api"
    )]
    OpenOffLoopback(std::net::SocketAddr),
}

/// The accepted tokens, by their hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a tokens file.
    pub fn from_path(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// Parses a tokens file's text; `name` is what errors call it.
    pub fn from_text(text: &str, name: &str) -> Result<Self, TokensError> {
        let mut tokens = Tokens::default();
        for (line, entry) in forecast_model::json::settings_lines::<TokenEntry>(text) {
            let error = |problem: String| TokensError::Entry {
                path: name.to_owned(),
                line,
                problem,
            };
            let entry = entry.map_err(|e| error(format!("not a token entry: {e}")))?;
            tokens.add(entry).map_err(error)?;
        }
        Ok(tokens)
    }

    /// Adds an entry.
    pub fn add(&mut self, entry: TokenEntry) -> Result<(), String> {
        let role = Role::parse(&entry.role)?;
        let hash: [u8; 32] = (0..entry.sha256.len())
            .step_by(2)
            .map(|i| {
                entry
                    .sha256
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("`{}`: sha256 is not 64 hexadecimal digits", entry.name))?;
        let principal = Principal {
            name: entry.name,
            role,
        };
        if self.by_hash.insert(hash, principal).is_some() {
            return Err("the same token is listed twice".into());
        }
        Ok(())
    }

    /// A new random token for `role`, and its entry for the tokens file.
    pub fn generate(name: &str, role: &Role) -> Result<(String, TokenEntry), TokensError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokensError::Random(e.to_string()))?;
        let token = format!(
            "fct_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let entry = TokenEntry {
            name: name.to_owned(),
            role: role.to_string(),
            sha256: forecast_model::hex(&digest(&token)),
        };
        Ok((token, entry))
    }

    /// The caller a token names, if it is one of these.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&digest(token))
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Who may call: anyone whose request names an allowed host (no tokens
/// configured), or holders of a token.
#[derive(Debug, Clone)]
pub enum Access {
    /// No tokens: every caller is a planner, if its `Host` is allowed.
    Open(Arc<Hosts>),
    /// Only holders of these tokens.
    Tokens(Arc<Tokens>),
}

impl Access {
    /// No tokens, loopback hosts only.
    pub fn open() -> Self {
        Access::Open(Arc::new(Hosts::default()))
    }
}

/// The `Host` values an API without tokens answers: loopback names and
/// addresses (`localhost`, `127.0.0.0/8`, `::1`), with any port, and
/// those given.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    extra: Vec<String>,
}

impl Hosts {
    /// Whether a request with this `Host` header (none: HTTP/1.0, not a
    /// browser's) is answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            }
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.extra.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }
}

/// Who may call the planner API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// Bearer tokens that may call the API (JSON Lines, as `forecastctl
    /// tokens generate` prints them). Without it the API answers anyone who
    /// reaches it, so the planner serves only on loopback.
    #[arg(long, env = "FORECAST_TOKENS", value_name = "FILE")]
    pub tokens: Option<std::path::PathBuf>,
    /// Serve without --tokens on an address other than loopback: anyone
    /// who reaches it reads every customer's demand and verdicts.
    #[arg(long, env = "FORECAST_INSECURE_OPEN_API")]
    pub insecure_open_api: bool,
    /// Without --tokens, also answer requests whose `Host` is this name (or
    /// address); others than loopback's are refused, against DNS rebinding.
    #[arg(
        long = "allowed-host",
        env = "FORECAST_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,
}

impl AccessArgs {
    /// The access these arguments name, serving on `addr`.
    pub fn access(&self, addr: std::net::SocketAddr) -> Result<Access, TokensError> {
        Ok(match &self.tokens {
            None if !addr.ip().is_loopback() && !self.insecure_open_api => {
                return Err(TokensError::OpenOffLoopback(addr));
            }
            None => Access::Open(Arc::new(Hosts {
                extra: self.allowed_hosts.clone(),
            })),
            Some(path) => Access::Tokens(Arc::new(Tokens::from_path(path)?)),
        })
    }
}

/// Paths anyone may read: the dashboard's static files (they hold no data;
/// the page asks for a token), the API's description and the probes.
fn public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/dashboard.js" | "/dashboard.css" | "/openapi.json" | "/healthz" | "/readyz"
    )
}

/// The middleware: puts the caller's [`Principal`] in the request, or
/// answers 401 (no or unknown token) or 403 (a customer on `/metrics`).
async fn authenticate(State(access): State<Access>, mut request: Request, next: Next) -> Response {
    let principal = match &access {
        Access::Open(hosts) => {
            let host = request
                .headers()
                .get(header::HOST)
                .map(|v| v.to_str().unwrap_or("\u{fffd}"));
            if !hosts.allows(host) {
                return ApiError::misdirected(
                    "this API has no tokens and answers only requests to a loopback name (localhost, 127.0.0.1, [::1]) or an --allowed-host",
                )
                .into_response();
            }
            Principal::anonymous()
        }
        Access::Tokens(tokens) => {
            if public(request.uri().path()) {
                return next.run(request).await;
            }
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let presented = header.and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
            let Some(presented) = presented else {
                return ApiError::unauthorized(
                    "this API needs a token: send `Authorization: Bearer <token>` (ask the operator for one)",
                )
                .into_response();
            };
            match tokens.authenticate(presented) {
                Some(p) => p.clone(),
                None => {
                    return ApiError::unauthorized(
                        "the bearer token is not valid (unknown, or revoked)",
                    )
                    .into_response();
                }
            }
        }
    };
    if request.uri().path().ends_with("/metrics") && principal.role != Role::Planner {
        return ApiError::forbidden().into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `router` with every request authenticated by `access`.
pub fn protect(router: Router, access: Access) -> Router {
    router.layer(axum::middleware::from_fn_with_state(access, authenticate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tokens_only_loopback_hosts_and_the_allowed_ones_are_answered() {
        let hosts = Hosts {
            extra: vec!["planner.internal".into()],
        };
        for ok in [
            None,
            Some("localhost"),
            Some("LOCALHOST:8080"),
            Some("127.0.0.1:8080"),
            Some("127.1.2.3"),
            Some("[::1]:8080"),
            Some("localhost."),
            Some("planner.internal:443"),
        ] {
            assert!(hosts.allows(ok), "{ok:?}");
        }
        for rebound in [
            Some("evil.example"),
            Some("evil.example:8080"),
            Some("localhost.evil.example"),
            Some("10.0.0.5:8080"),
            Some("[::2]:80"),
            Some(""),
            Some("\u{fffd}"),
        ] {
            assert!(!hosts.allows(rebound), "{rebound:?}");
        }
    }

    #[test]
    fn without_tokens_the_api_serves_only_on_loopback_unless_told() {
        let open = AccessArgs::default();
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = open.access(any).unwrap_err().to_string();
        assert!(
            err.contains("without --tokens") && err.contains("--insecure-open-api"),
            "{err}"
        );
        assert!(matches!(
            open.access("127.0.0.1:8080".parse().unwrap()),
            Ok(Access::Open(_))
        ));
        assert!(matches!(
            open.access("[::1]:8080".parse().unwrap()),
            Ok(Access::Open(_))
        ));
        let told = AccessArgs {
            insecure_open_api: true,
            ..AccessArgs::default()
        };
        assert!(matches!(told.access(any), Ok(Access::Open(_))));
    }

    #[test]
    fn roles_parse_and_print() {
        assert_eq!(Role::parse("planner"), Ok(Role::Planner));
        assert_eq!(
            Role::parse("customer:TENCENT"),
            Ok(Role::Customer("TENCENT".into()))
        );
        assert_eq!(Role::Customer("X".into()).to_string(), "customer:X");
        for bad in ["customer:", "admin", "planner:x", ""] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_tokens_authenticate_and_the_file_holds_only_their_hash() {
        let (token, entry) = Tokens::generate("alice", &Role::Planner).unwrap();
        assert!(token.starts_with("fct_") && token.len() == 47, "{token}");
        let line = serde_json::to_string(&entry).unwrap();
        assert!(!line.contains(&token[4..]));
        let tokens = Tokens::from_text(&format!("# tokens\n{line}\n"), "t").unwrap();
        assert_eq!(tokens.authenticate(&token).unwrap().name, "alice");
        assert!(tokens.authenticate("fct_guess").is_none());
        let (other, _) = Tokens::generate("bob", &Role::Planner).unwrap();
        assert_ne!(token, other);
    }

    #[test]
    fn bad_files_name_the_line() {
        let err = Tokens::from_text("{\"name\":\"a\",\"role\":\"root\",\"sha256\":\"00\"}", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("root"), "{err}");
        let (_, entry) = Tokens::generate("a", &Role::Planner).unwrap();
        let line = serde_json::to_string(&entry).unwrap();
        let err = Tokens::from_text(&format!("{line}\n{line}\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
    }
}
