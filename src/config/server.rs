//! `[server]`: where the serving half (`wsherd-server`) listens, with which certificate, and
//! the token it asks for.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::Value;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::endpoint::secret;
use super::read::{Reader, join, origin_of};

pub(crate) const SERVER_KEYS: &[&str] = &["listen", "tls", "token", "allow_unauthenticated"];
pub(crate) const SERVER_TLS_KEYS: &[&str] = &["cert", "key"];

/// The token `/metrics` and `/api/*` ask for (`Authorization: Bearer <token>`).
///
/// Neither `Debug` nor `Display` shows it; [`Token::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: String,
    source: TokenSource,
}

/// Where a [`Token`] came from, which is what `wsherd check` shows instead of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Written in the file (or given in code).
    Inline,
    /// `{ env = "VARIABLE" }`.
    Env(String),
    /// `{ file = "PATH" }`.
    File(PathBuf),
}

impl Token {
    /// A token given in code. Refused when empty: an empty token would let anyone in.
    pub fn new(value: impl Into<String>) -> Result<Token, EmptyToken> {
        Self::with_source(value.into(), TokenSource::Inline)
    }

    fn with_source(value: String, source: TokenSource) -> Result<Token, EmptyToken> {
        if value.is_empty() {
            return Err(EmptyToken);
        }
        Ok(Token { value, source })
    }

    /// The token itself, to compare with what a request carries. Never print it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it came from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", super::REDACTED)
    }
}

/// A token was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token is empty")]
pub struct EmptyToken;

/// The certificate chain and private key the server presents (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// `[server]`: the serving half's settings. With no `listen` there is no server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where to listen (`"127.0.0.1:9090"`, `"[::1]:9090"`); `None`: no server.
    pub listen: Option<SocketAddr>,
    /// HTTPS with this certificate; plain HTTP without.
    pub tls: Option<ServerTlsFiles>,
    /// The token `/metrics` and `/api/*` require; none: they are open.
    pub token: Option<Token>,
    /// Lets the server listen on an address other than loopback without a token.
    pub allow_unauthenticated: bool,
}

impl ServerSettings {
    /// Whether these settings may listen on `listen`: on an address other than loopback, only
    /// with a token or `allow_unauthenticated`. The error says what to change.
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), String> {
        if listen.ip().is_loopback() || self.token.is_some() || self.allow_unauthenticated {
            return Ok(());
        }
        Err(format!(
            "{listen} is not a loopback address: anyone who reaches it could read the status \
             and pause or stop endpoints; set server.token (a string, {{ env = \"VARIABLE\" }} \
             or {{ file = \"PATH\" }}), or allow_unauthenticated = true if something in front \
             of it checks who calls"
        ))
    }
}

/// Checks that `cert` holds PEM certificates and `key` a PEM private key (whether they fit
/// each other is checked when the server starts).
pub fn check_tls_files(files: &ServerTlsFiles) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: cannot read certificates: {e}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", files.cert.display()));
    }
    PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: no usable private key: {e}", files.key.display()))?;
    Ok(())
}

/// Reads `[server]` into `settings`.
pub(crate) fn read_server(
    reader: &mut Reader,
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    settings: &mut ServerSettings,
) {
    let Some(table) = reader.table(value, "server", SERVER_KEYS) else {
        return;
    };
    if let Some(text) = reader.string(&table, "listen") {
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) => settings.listen = Some(addr),
            Err(_) => reader.problem(
                table.map.get("listen").and_then(origin_of).as_deref(),
                "server.listen",
                format!(
                    "expected an address with a port such as \"127.0.0.1:9090\" or \"[::1]:9090\", found {text:?}"
                ),
            ),
        }
    }
    if let Some(allow) = reader.boolean(&table, "allow_unauthenticated") {
        settings.allow_unauthenticated = allow;
    }
    if let Some(token) = table.map.get("token") {
        settings.token = read_token(reader, token, &join("server", "token"), lookup);
    }
    if let Some(tls) = table.map.get("tls") {
        read_tls(reader, tls, settings);
    }
    if let Some(listen) = settings.listen
        && let Err(why) = settings.check_exposure(listen)
    {
        reader.problem(
            table.map.get("listen").and_then(origin_of).as_deref(),
            "server.listen",
            why,
        );
    }
}

/// A token (a string, `{ env = "VARIABLE" }` or `{ file = "PATH" }`) at `path`; `None`, with
/// the problem noted, when it cannot be read or is empty.
pub(crate) fn read_token(
    reader: &mut Reader,
    token: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Token> {
    let mut scratch = String::new();
    let resolved = secret::resolve(reader, token, path, lookup, &mut scratch)?;
    let source = match (secret::file_of(token), secret::env_of(token)) {
        (Some(file), _) => TokenSource::File(file),
        (None, Some(variable)) => TokenSource::Env(variable),
        (None, None) => TokenSource::Inline,
    };
    match Token::with_source(resolved, source) {
        Ok(token) => Some(token),
        Err(EmptyToken) => {
            reader.problem(
                origin_of(token).as_deref(),
                path,
                "is empty: an empty token would let anyone in",
            );
            None
        }
    }
}

fn read_tls(reader: &mut Reader, value: &Value, settings: &mut ServerSettings) {
    let Some(table) = reader.table(value, "server.tls", SERVER_TLS_KEYS) else {
        return;
    };
    let cert = reader.string(&table, "cert");
    let key = reader.string(&table, "key");
    for (name, found) in [("cert", &cert), ("key", &key)] {
        if found.is_none() && !table.map.contains_key(name) {
            reader.problem(
                table.origin.as_deref(),
                &join("server.tls", name),
                format!(
                    "is required with server.tls: the PEM {}",
                    if name == "cert" {
                        "certificate chain"
                    } else {
                        "private key"
                    }
                ),
            );
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return;
    };
    let files = ServerTlsFiles {
        cert: Path::new(&cert).to_path_buf(),
        key: Path::new(&key).to_path_buf(),
    };
    // Read them now: a missing or broken file is a configuration error, not a surprise at start.
    match check_tls_files(&files) {
        Ok(()) => settings.tls = Some(files),
        Err(why) => reader.problem(table.origin.as_deref(), "server.tls", why),
    }
}
