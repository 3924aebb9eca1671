//! What one connection needs to know.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wsherd_protocol::{HeartbeatSpec, InvalidHeartbeat, KindRule, ReplyMatcher, redact_url};

/// Default handshake timeout: long enough for a slow TLS peer, short enough to notice a dead one.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ConnectionConfig::connect_timeout`]: each resolved address, and the proxy's
/// answer, get this long before the next address is tried or the attempt fails.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest frame accepted from a peer (awc's own default, 64 KiB, is too small for
/// order-book snapshots).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1024 * 1024;
/// Default largest message, after reassembling fragments.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Default time to wait for the peer's answer to our Close before dropping the socket.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on bytes waiting to be written (queued plus handed to the socket unflushed).
pub const DEFAULT_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Close reasons longer than this are cut: a control frame carries at most 125 bytes, two of
/// which are the code.
pub const MAX_CLOSE_REASON: usize = 123;
/// Default [`ConnectionConfig::max_stall`].
pub const DEFAULT_MAX_STALL: Duration = Duration::from_secs(30);
/// Default [`ConnectionConfig::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection does with a text message that is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvalidUtf8Policy {
    /// Fail the connection with close code 1007 and [`EndReason::InvalidUtf8`], as RFC 6455
    /// §8.1 says an endpoint must.
    ///
    /// [`EndReason::InvalidUtf8`]: crate::EndReason::InvalidUtf8
    #[default]
    Fail,
    /// Turn the message into a dead letter and go on reading: for a peer known to send the
    /// odd broken message whose feed is still worth having.
    DeadLetter,
}

/// Settings of one connection.
///
/// `Debug` shows the URL through [`redact_url`] and header names without their values.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// `ws://` URL to connect to. Events, logs and status show it through [`redact_url`].
    pub url: String,
    /// Extra request headers, in order. Values are never printed by `Debug`.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// Time allowed for the whole attempt: preparing it (secret files, the `on_connect`
    /// hook), DNS, TCP, the proxy, TLS and the HTTP upgrade.
    pub handshake_timeout: Duration,
    /// Time allowed for one TCP connect (each resolved address in turn gets this long) and
    /// for the proxy to open its tunnel; within the handshake timeout.
    pub connect_timeout: Duration,
    /// The proxy to connect through (none: directly). Boxed: most endpoints use none.
    pub proxy: Option<Box<crate::proxy::ProxySetting>>,
    /// Asked before every attempt for the URL and headers to use (a token fetched first).
    pub on_connect: Option<crate::prepare::ConnectHook>,
    /// Largest single frame accepted; a larger one ends the connection with close code 1009.
    pub max_frame_size: usize,
    /// Largest reassembled message accepted; a larger one ends the connection with 1009.
    pub max_message_size: usize,
    /// Time to wait for the peer to answer a Close.
    pub close_timeout: Duration,
    /// Bytes that may wait to be written; past it writes fail with `WriteError::Full` and
    /// server Pings go unanswered.
    pub write_buffer: usize,
    /// Where each message's kind lives.
    pub kind: KindRule,
    /// Pings, pong timeout and the idle watchdog.
    pub heartbeat: HeartbeatSpec,
    /// TLS files for `wss://` (none: Web PKI roots, no client certificate).
    pub tls: Option<crate::tls::TlsFiles>,
    /// When set, the owner is told (`Notice::LiveReply`) when the first message matching it
    /// arrives: a subscription acknowledgement.
    pub live_after: Option<ReplyMatcher>,
    /// Longest a full `Overflow::Backpressure` subscriber may hold the socket's reads paused;
    /// past it the life ends with `EndReason::SubscriberStalled`.
    pub max_stall: Duration,
    /// Longest one write may wait for the peer to take bytes (a peer that sends but never
    /// reads); past it the life ends with `EndReason::WriteStalled`.
    pub write_timeout: Duration,
    /// What a text message that is not UTF-8 does: fail the connection (the default) or
    /// become a dead letter.
    pub invalid_utf8: InvalidUtf8Policy,
    /// Values that come from files (the URL, header values): read again before every attempt
    /// when the file changed, replacing what `url` and `headers` hold.
    pub file_secrets: Vec<crate::secret_files::FileSecret>,
    /// permessage-deflate to offer (none: not offered). The server may decline; what it
    /// accepts is checked, and compressed messages it sends are inflated under
    /// `max_message_size`.
    pub compression: Option<crate::deflate::DeflateOffer>,
    /// How the server compresses what it sends in binary messages; with it set, binary
    /// messages are inflated (under `max_message_size`) and taken as text.
    pub decompress: Option<crate::inflate::Decompress>,
    /// Sequence numbers to check in the inbound messages (gaps, duplicates, resets).
    /// (Boxed: most endpoints check none, and each endpoint keeps its own settings.)
    pub sequence: Option<Box<wsherd_protocol::SequenceSpec>>,
}

/// A connection setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// A heartbeat duration is too short.
    #[error(transparent)]
    Heartbeat(#[from] InvalidHeartbeat),
    /// A permessage-deflate window outside 8 to 15 bits.
    #[error("compression: {0}")]
    Compression(String),
    /// `connect_timeout` is zero: every connect would time out at once.
    #[error("the connect timeout must be more than 0s")]
    ZeroConnectTimeout,
}

impl ConnectionConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectionConfig {
            url: url.into(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            proxy: None,
            on_connect: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            write_buffer: DEFAULT_WRITE_BUFFER,
            kind: KindRule::default(),
            heartbeat: HeartbeatSpec::default(),
            tls: None,
            live_after: None,
            max_stall: DEFAULT_MAX_STALL,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            invalid_utf8: InvalidUtf8Policy::default(),
            file_secrets: Vec::new(),
            sequence: None,
            decompress: None,
            compression: None,
        }
    }

    /// Checks the settings a connection cannot run with: heartbeat durations too short to
    /// re-arm a timer on, a zero connect timeout. A herd checks every endpoint it adds; a connection started on its
    /// own raises such durations to the minimum instead of spinning.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.heartbeat.validate()?;
        if self.connect_timeout.is_zero() {
            return Err(InvalidConfig::ZeroConnectTimeout);
        }
        if let Some(offer) = &self.compression {
            offer.validate().map_err(InvalidConfig::Compression)?;
            if self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            {
                return Err(InvalidConfig::Compression(
                    "a Sec-WebSocket-Extensions header and compression cannot both be set: \
                     the answer could not be checked against one offer"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks the sequence numbers of inbound messages per `sequence`.
    pub fn sequence(mut self, sequence: wsherd_protocol::SequenceSpec) -> Self {
        self.sequence = Some(Box::new(sequence));
        self
    }

    /// Sets what a text message that is not UTF-8 does.
    pub fn invalid_utf8(mut self, policy: InvalidUtf8Policy) -> Self {
        self.invalid_utf8 = policy;
        self
    }

    /// Sets how long a full subscriber may pause the socket's reads.
    pub fn max_stall(mut self, stall: Duration) -> Self {
        self.max_stall = stall;
        self
    }

    /// Sets how long one write may wait for the peer to read.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the kind rule.
    pub fn kind(mut self, kind: KindRule) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the TLS files.
    pub fn tls(mut self, tls: crate::tls::TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the heartbeat.
    pub fn heartbeat(mut self, heartbeat: HeartbeatSpec) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the time one TCP connect, or the proxy's answer, may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects through `proxy`.
    pub fn proxy(mut self, proxy: crate::proxy::ProxySetting) -> Self {
        self.proxy = Some(Box::new(proxy));
        self
    }

    /// Asks `hook` before every attempt for the URL and headers to connect with.
    pub fn on_connect(mut self, hook: crate::prepare::ConnectHook) -> Self {
        self.on_connect = Some(hook);
        self
    }

    /// Offers permessage-deflate.
    pub fn compression(mut self, offer: crate::deflate::DeflateOffer) -> Self {
        self.compression = Some(offer);
        self
    }

    /// Inflates binary messages compressed as `format` and takes them as text.
    pub fn decompress(mut self, format: crate::inflate::Decompress) -> Self {
        self.decompress = Some(format);
        self
    }

    /// Sets the largest accepted frame.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets the largest accepted message.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets the write buffer bound in bytes.
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// Sets how long to wait for the peer's Close.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ConnectionConfig")
            .field("url", &redact_url(&self.url))
            .field("headers", &header_names)
            .field("subprotocols", &self.subprotocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("proxy", &self.proxy.as_deref().map(ToString::to_string))
            .field("on_connect", &self.on_connect.as_ref().map(|_| "hook"))
            .field("max_frame_size", &self.max_frame_size)
            .field("max_message_size", &self.max_message_size)
            .field("close_timeout", &self.close_timeout)
            .field("write_buffer", &self.write_buffer)
            .field("kind", &self.kind)
            .field("heartbeat", &self.heartbeat)
            .field("live_after", &self.live_after)
            .field("tls", &self.tls)
            .field("invalid_utf8", &self.invalid_utf8)
            .field("decompress", &self.decompress)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Checks that `url` is a `ws://` or `wss://` URL with a host; the error says what is wrong.
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|error| format!("is not a valid URL: {error}"))?;
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        _ => return Err("is not a ws:// or wss:// URL".to_owned()),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("has no host".to_owned()),
    }
}

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason.to_owned();
    }
    let mut cut = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    reason[..cut].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_header_values() {
        let config =
            ConnectionConfig::new("ws://127.0.0.1:1/").header("Authorization", "Bearer s3cret");
        let shown = format!("{config:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn debug_shows_the_proxy_without_its_credentials() {
        let proxy = crate::proxy::ProxyUrl::parse("http://bob:pw1@proxy.local:3128").unwrap();
        let config = ConnectionConfig::new("ws://127.0.0.1:1/")
            .proxy(crate::proxy::ProxySetting::Url(proxy));
        let shown = format!("{config:?}");
        assert!(shown.contains("http://***@proxy.local:3128"), "{shown}");
        assert!(!shown.contains("pw1") && !shown.contains("bob"), "{shown}");
    }

    #[test]
    fn debug_redacts_the_url() {
        let config = ConnectionConfig::new("wss://bob:pw1@h.example/ws?listenKey=k3y#f");
        let shown = format!("{config:?}");
        assert!(
            shown.contains("wss://***@h.example/ws?listenKey=***#***"),
            "{shown}"
        );
        assert!(!shown.contains("pw1") && !shown.contains("k3y"), "{shown}");
    }

    #[test]
    fn too_short_heartbeats_are_refused() {
        let mut config = ConnectionConfig::new("ws://127.0.0.1:1/");
        assert_eq!(config.validate(), Ok(()));
        config.heartbeat.interval = Duration::ZERO;
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("heartbeat interval"), "{error}");
        config.heartbeat.interval = Duration::from_secs(1);
        config.heartbeat.idle_timeout = Some(Duration::ZERO);
        assert!(config.validate().is_err());
        let zero = ConnectionConfig::new("ws://127.0.0.1:1/").connect_timeout(Duration::ZERO);
        assert_eq!(zero.validate(), Err(InvalidConfig::ZeroConnectTimeout));
        let both = ConnectionConfig::new("ws://127.0.0.1:1/")
            .header("Sec-WebSocket-Extensions", "permessage-deflate")
            .compression(crate::deflate::DeflateOffer::default());
        assert!(matches!(
            both.validate(),
            Err(InvalidConfig::Compression(_))
        ));
    }

    #[test]
    fn urls() {
        assert_eq!(validate_url("ws://127.0.0.1:9001/feed?x=1"), Ok(()));
        assert_eq!(validate_url("wss://example.com/"), Ok(()));
        assert_eq!(
            validate_url("htp://x").unwrap_err(),
            "is not a ws:// or wss:// URL"
        );
        assert_eq!(
            validate_url("http://x").unwrap_err(),
            "is not a ws:// or wss:// URL"
        );
        assert!(
            validate_url("not a url")
                .unwrap_err()
                .starts_with("is not a valid URL")
        );
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(truncate_reason("bye"), "bye");
        let long = "ü".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON);
        assert!(long.starts_with(&cut));
    }
}

/// A connection's settings, held by whoever owns them and shared with the connection, so that
/// an endpoint's settings exist once however many actors read them: a supervisor hands its
/// connection the endpoint's own spec (which holds the `ConnectionConfig`), not a copy.
///
/// Derefs to [`ConnectionConfig`]. Made from an `Arc<ConnectionConfig>`, or with
/// [`SharedConfig::within`] from anything that holds one.
#[derive(Clone)]
pub struct SharedConfig(Arc<dyn AsRef<ConnectionConfig> + Send + Sync>);

impl SharedConfig {
    /// The settings inside `owner` (which keeps them alive for as long as this is held).
    pub fn within<T: AsRef<ConnectionConfig> + Send + Sync + 'static>(owner: Arc<T>) -> Self {
        SharedConfig(owner)
    }
}

impl std::ops::Deref for SharedConfig {
    type Target = ConnectionConfig;

    fn deref(&self) -> &ConnectionConfig {
        (*self.0).as_ref()
    }
}

impl From<Arc<ConnectionConfig>> for SharedConfig {
    fn from(config: Arc<ConnectionConfig>) -> Self {
        SharedConfig(config)
    }
}

impl From<ConnectionConfig> for SharedConfig {
    fn from(config: ConnectionConfig) -> Self {
        SharedConfig(Arc::new(config))
    }
}

impl AsRef<ConnectionConfig> for ConnectionConfig {
    fn as_ref(&self) -> &ConnectionConfig {
        self
    }
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
