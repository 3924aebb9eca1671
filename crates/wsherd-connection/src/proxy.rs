//! Which proxy a connection goes through: a URL from the configuration, or the environment's
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` with `NO_PROXY`, as curl and most HTTP clients
//! read them.
//!
//! Proxy credentials are secrets: `Debug` and `Display` show them as `***`, and so does every
//! error.

use std::fmt;
use std::net::IpAddr;

/// The kind of proxy, from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `http://`: an HTTP proxy asked for a tunnel with `CONNECT host:port` (for `ws://` and
    /// `wss://` alike; TLS runs inside the tunnel, with the server's name).
    Http,
    /// `socks5://`: SOCKS5, the server's name resolved here and its address sent.
    Socks5,
    /// `socks5h://`: SOCKS5, the server's name sent for the proxy to resolve (remote DNS).
    Socks5h,
}

impl ProxyKind {
    /// The URL scheme: `http`, `socks5` or `socks5h`.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            ProxyKind::Http => 80,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        }
    }
}

/// A user name and password for the proxy (HTTP `Proxy-Authorization: Basic`, SOCKS5
/// username/password authentication). Never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyCredentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCredentials(***)")
    }
}

/// One proxy: `http://[user:pass@]host:port`, `socks5://…` or `socks5h://…`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    /// How to talk to it.
    pub kind: ProxyKind,
    /// Its host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Its port (80 for `http://`, 1080 for SOCKS5 when the URL names none).
    pub port: u16,
    /// Credentials from the URL's userinfo, percent-decoded.
    pub credentials: Option<ProxyCredentials>,
}

/// A proxy URL that cannot be used; the message never holds the credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy {shown}: {why}")]
pub struct InvalidProxy {
    /// The URL as given, its credentials and query replaced by `***`.
    pub shown: String,
    /// What is wrong.
    pub why: String,
}

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://…` or `socks5h://…` (a trailing `/`
    /// is allowed, nothing else after the authority).
    pub fn parse(url: &str) -> Result<ProxyUrl, InvalidProxy> {
        let invalid = |why: &str| InvalidProxy {
            shown: shown(url),
            why: why.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected http://, socks5:// or socks5h://"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return Err(invalid(
                    "TLS to the proxy itself is not supported; use http:// (the tunnel still \
                     carries wss:// encrypted end to end)",
                ));
            }
            _ => return Err(invalid("expected http://, socks5:// or socks5h://")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(invalid("a proxy URL has no path, query or fragment"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |part: &str| {
                    percent_decode(part).ok_or_else(|| {
                        invalid("the credentials are not valid percent-encoded text")
                    })
                };
                Some(ProxyCredentials {
                    user: decode(user)?,
                    password: decode(password)?,
                })
            }
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("no host"))?;
        if host.contains(':') && !hostport.starts_with('[') {
            return Err(invalid(
                "an IPv6 address in a URL is written in brackets: [::1]:1080",
            ));
        }
        let port = match port {
            None => kind.default_port(),
            Some(port) => parse_port(port)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        };
        if kind == ProxyKind::Http && credentials.as_ref().is_some_and(|c| c.user.contains(':')) {
            return Err(invalid(
                "an HTTP proxy's user name cannot hold a colon (Basic authentication splits there)",
            ));
        }
        if kind != ProxyKind::Http
            && credentials
                .as_ref()
                .is_some_and(|c| c.user.len() > 255 || c.password.len() > 255)
        {
            return Err(invalid(
                "SOCKS5 user names and passwords are at most 255 bytes",
            ));
        }
        Ok(ProxyUrl {
            kind,
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// `host:port` as an authority (brackets around an IPv6 address).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(
            f,
            "{}://{credentials}{}",
            self.kind.scheme(),
            self.authority()
        )
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Where an endpoint's connections go through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxySetting {
    /// This proxy, for every attempt.
    Url(ProxyUrl),
    /// The process environment at each attempt: `HTTPS_PROXY` for `wss://` and `HTTP_PROXY`
    /// for `ws://` (lower-case names first, as curl reads them), else `ALL_PROXY`; none when
    /// the server's host matches `NO_PROXY`.
    Environment,
}

impl fmt::Display for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Url(url) => url.fmt(f),
            ProxySetting::Environment => f.write_str("env"),
        }
    }
}

impl ProxySetting {
    /// The proxy for a connection to `host:port` (`secure`: `wss://`), with `lookup` reading
    /// environment variables; `Ok(None)`: connect directly. An unusable variable is an error
    /// that names it.
    pub fn resolve(
        &self,
        host: &str,
        port: u16,
        secure: bool,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ProxyUrl>, InvalidProxy> {
        match self {
            ProxySetting::Url(url) => Ok(Some(url.clone())),
            ProxySetting::Environment => from_environment(host, port, secure, lookup),
        }
    }
}

/// The environment's proxy for `host:port`.
fn from_environment(
    host: &str,
    port: u16,
    secure: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ProxyUrl>, InvalidProxy> {
    // As curl reads them: the lower-case name first; an empty variable counts as unset, so
    // an empty `no_proxy` does not hide `NO_PROXY`.
    let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    let read = |name: &str| {
        let lower = name.to_ascii_lowercase();
        set(&lower)
            .map(|value| (lower, value))
            .or_else(|| set(name).map(|value| (name.to_owned(), value)))
    };
    if let Some((_, no_proxy)) = read("NO_PROXY")
        && bypassed(&no_proxy, host, port)
    {
        return Ok(None);
    }
    let named = if secure { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    let Some((name, value)) = read(named).or_else(|| read("ALL_PROXY")) else {
        return Ok(None);
    };
    let value = value.trim();
    // curl takes a bare `host:port` as an HTTP proxy; so do we.
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    ProxyUrl::parse(&url)
        .map(Some)
        .map_err(|error| InvalidProxy {
            shown: format!("{name}={}", error.shown),
            why: error.why,
        })
}

/// Whether `NO_PROXY` (comma- or space-separated) exempts `host:port`: `*` exempts all; an
/// entry matches the host itself or, as a domain, any name under it (`example.com` and
/// `.example.com` both match `api.example.com`); an IP address or a CIDR block
/// (`10.0.0.0/8`, `fd00::/8`) matches addresses in it; an entry with `:port` matches that
/// port only.
pub fn bypassed(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let address = host.parse::<IpAddr>().ok();
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match split_host_port(entry) {
                Some((name, Some(p))) if !entry.contains('/') => match parse_port(p) {
                    Some(p) => (name, Some(p)),
                    // `host:abc` names no port: it matches nothing.
                    None => return false,
                },
                _ => (entry, None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if let Some(address) = address {
                return matches_address(name, address);
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !name.is_empty()
                && (host == name
                    || host
                        .strip_suffix(name.as_str())
                        .is_some_and(|rest| rest.ends_with('.')))
        })
}

/// Whether `entry` (an address or a CIDR block) holds `address`.
fn matches_address(entry: &str, address: IpAddr) -> bool {
    let (base, bits) = match entry.split_once('/') {
        Some((base, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (base, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(base) = base.parse::<IpAddr>() else {
        return false;
    };
    match (base, address) {
        (IpAddr::V4(base), IpAddr::V4(address)) => {
            within(base.to_bits().into(), address.to_bits().into(), bits, 32)
        }
        (IpAddr::V6(base), IpAddr::V6(address)) => {
            within(base.to_bits(), address.to_bits(), bits, 128)
        }
        _ => false,
    }
}

fn within(base: u128, address: u128, bits: Option<u32>, width: u32) -> bool {
    let bits = bits.unwrap_or(width);
    if bits > width {
        // `10.0.0.0/40` is no block.
        return false;
    }
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (base >> shift) == (address >> shift)
}

/// Splits `host[:port]` (`[v6]:port` for an IPv6 address); `None` without a host.
pub(crate) fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        return (!host.is_empty()).then_some((host, port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address, no port.
        Some((host, _)) if host.contains(':') => (hostport, None),
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    };
    (!host.is_empty()).then_some((host, port))
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A port written as digits only, 1 to 65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// A proxy URL as an error may show it: whatever precedes the last `@` is credentials
/// (a password may hold `/`, `?` or `#`, which `redact_url` would take for the end of the
/// authority), and a query is hidden too.
fn shown(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.contains('@') => (Some(scheme), rest),
        _ => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => rest.to_owned(),
    };
    let rest = match rest.split_once(['?', '#']) {
        Some((before, _)) => format!("{before}?***"),
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// `%XX` decoded; `None` for a broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn proxy_urls_parse_with_default_ports_and_decoded_credentials() {
        let url = ProxyUrl::parse("http://al%40ice:p%3Ass@proxy.local:3128/").unwrap();
        assert_eq!(url.kind, ProxyKind::Http);
        assert_eq!((url.host.as_str(), url.port), ("proxy.local", 3128));
        let credentials = url.credentials.clone().unwrap();
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("al@ice", "p:ss")
        );
        assert_eq!(url.to_string(), "http://***@proxy.local:3128");
        assert!(!format!("{url:?}").contains("p:ss"));
        let socks = ProxyUrl::parse("socks5h://[::1]").unwrap();
        assert_eq!(
            (socks.kind, socks.host.as_str(), socks.port),
            (ProxyKind::Socks5h, "::1", 1080)
        );
        assert_eq!(socks.authority(), "[::1]:1080");
        assert_eq!(ProxyUrl::parse("http://p").unwrap().port, 80);
    }

    #[test]
    fn unusable_proxy_urls_say_why_without_showing_the_password() {
        for (url, why) in [
            ("ftp://p:1", "expected http://"),
            ("https://p:1", "not supported"),
            ("http://p:0", "port"),
            ("http://p:99999", "port"),
            ("http://u:s3cret@:1", "no host"),
            ("http://u:s3cret@p:1/path", "no path"),
            ("http://u:%zz@p:1", "percent"),
            ("http://u:%+Fs3cret@p:1", "percent"),
            ("http://u:s3cret@p:+80", "port"),
            ("proxy:1", "expected"),
            ("socks5://::1:1080", "brackets"),
            ("http://a%3Ab:s3cret@p:1", "colon"),
            // A password holding what ends an authority in a URL.
            ("http://u:s3/cret@p:1/x", "no path"),
            ("http://u:s3?cret@p:1", "no path"),
            ("http://u:s3#cret@p:1", "no path"),
        ] {
            let error = ProxyUrl::parse(url).unwrap_err();
            assert!(error.why.contains(why), "{url}: {error}");
            assert!(!error.to_string().contains("cret"), "{error}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_environment_gives_https_proxy_for_wss_http_proxy_for_ws_and_all_proxy_else() {
        let lookup = env(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "plain:2"),
            ("HTTP_PROXY", "http://ignored:9"),
            ("ALL_PROXY", "socks5h://all:3"),
        ]);
        let pick = |secure| {
            ProxySetting::Environment
                .resolve("feed.example", 443, secure, &lookup)
                .unwrap()
                .map(|p| p.authority())
        };
        assert_eq!(pick(true).as_deref(), Some("secure:1"));
        assert_eq!(pick(false).as_deref(), Some("plain:2"), "lower case first");
        let only_all = env(&[("ALL_PROXY", "socks5h://all:3"), ("HTTPS_PROXY", " ")]);
        let all = ProxySetting::Environment
            .resolve("feed.example", 443, true, &only_all)
            .unwrap()
            .unwrap();
        assert_eq!((all.kind, all.port), (ProxyKind::Socks5h, 3));
        assert_eq!(
            ProxySetting::Environment
                .resolve("feed.example", 80, false, &env(&[]))
                .unwrap(),
            None
        );
        let broken = env(&[("https_proxy", "http://u:s3/cret@p:notaport")]);
        let error = ProxySetting::Environment
            .resolve("feed.example", 443, true, &broken)
            .unwrap_err();
        assert!(
            error.to_string().contains("https_proxy=") && !error.to_string().contains("s3"),
            "{error}"
        );
        // An empty lower-case variable is unset: the upper-case one still counts.
        let shadowed = env(&[
            ("no_proxy", ""),
            ("NO_PROXY", "feed.example"),
            ("https_proxy", " "),
            ("HTTPS_PROXY", "http://p:1"),
        ]);
        assert_eq!(
            ProxySetting::Environment
                .resolve("feed.example", 443, true, &shadowed)
                .unwrap(),
            None
        );
        assert!(
            ProxySetting::Environment
                .resolve("other.example", 443, true, &shadowed)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn no_proxy_matches_names_domains_addresses_blocks_and_ports() {
        let list = "localhost, .internal.example,corp.example  10.0.0.0/8,::1,feed.example:9443";
        assert!(bypassed(list, "localhost", 80));
        assert!(bypassed(list, "api.internal.example", 443));
        assert!(bypassed(list, "corp.example", 443));
        assert!(bypassed(list, "a.b.corp.example", 443));
        assert!(!bypassed(list, "notcorp.example", 443));
        assert!(bypassed(list, "10.20.30.40", 443));
        assert!(!bypassed(list, "11.0.0.1", 443));
        assert!(bypassed(list, "[::1]", 443));
        assert!(bypassed(list, "feed.example", 9443));
        assert!(!bypassed(list, "feed.example", 443));
        assert!(bypassed("*", "anything", 1));
        assert!(bypassed("fd00::/8", "fd12::5", 1));
        assert!(!bypassed("feed.example:abc", "feed.example", 443));
        assert!(!bypassed("10.0.0.0/40", "10.0.0.1", 443));
        assert!(!bypassed("fd00::/8", "fe80::1", 1));
        let lookup = env(&[("no_proxy", "feed.example"), ("ALL_PROXY", "http://p:1")]);
        assert_eq!(
            ProxySetting::Environment
                .resolve("feed.example", 443, true, &lookup)
                .unwrap(),
            None
        );
    }
}
