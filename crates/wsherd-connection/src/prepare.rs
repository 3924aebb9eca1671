//! The prepare stage of an attempt: what it connects to, as of now.
//!
//! Secrets kept in files are read again when they changed, the TLS files likewise, the
//! `on_connect` hook is asked for the URL and headers, and the proxy is picked (from the
//! environment when the endpoint says so). Nothing here blocks the arbiter: files are looked
//! at on the blocking pool, and the hook's future runs on the arbiter like any other.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use wsherd_protocol::redact_url;

use crate::config::ConnectionConfig;
use crate::dial::Dial;
use crate::event::{ConnectStage, EndReason};
use crate::secret_files::{SecretSlot, read_secret_files};
use crate::tls_cache;

/// What an attempt connects to: the URL and the request headers, as the configuration holds
/// them (secrets from files current), for an [`ConnectHook`] to change.
///
/// `Debug` shows the URL through [`redact_url`] and header names only.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// The `ws://` or `wss://` URL.
    pub url: String,
    /// The request headers, in order.
    pub headers: Vec<(String, String)>,
}

impl ConnectTarget {
    /// Sets header `name` (replacing every header of that name, in any case) to `value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ConnectTarget")
            .field("url", &redact_url(&self.url))
            .field("headers", &names)
            .finish()
    }
}

/// Asked before every attempt, with the configured [`ConnectTarget`], for the one to connect
/// to: a listen key or a short-lived token fetched over HTTP first, a URL signed for this
/// attempt. An error fails the attempt ([`EndReason::HookFailed`], under the endpoint's
/// backoff); a hook that never answers is cut by the handshake timeout. The future runs on
/// the connection's arbiter: it may use `awc`, and must not block.
pub type ConnectHook = Arc<
    dyn Fn(ConnectTarget) -> LocalBoxFuture<'static, Result<ConnectTarget, String>> + Send + Sync,
>;

/// What the rest of the attempt needs.
pub(crate) struct Prepared {
    /// The URL handed to awc: always `ws://host:port/…`, as wsherd's dial opens the TLS
    /// itself.
    pub(crate) request_url: String,
    /// The `Host` header as the URL has it (awc would otherwise write the explicit port).
    pub(crate) host: String,
    /// The request headers.
    pub(crate) headers: Vec<(String, String)>,
    /// How to open the transport.
    pub(crate) dial: Rc<Dial>,
}

/// Prepares one attempt of `config`; `stage` is the attempt's progress.
pub(crate) async fn prepare(
    config: &ConnectionConfig,
    stage: Rc<Cell<ConnectStage>>,
) -> Result<Prepared, EndReason> {
    let (url, headers) = current_secrets(config).await?;
    let mut target = ConnectTarget { url, headers };
    if let Some(hook) = &config.on_connect {
        target = hook(target)
            .await
            .map_err(|reason| EndReason::HookFailed { reason })?;
    }
    let invalid = |reason: String| EndReason::InvalidRequest { reason };
    let uri: Uri = target.url.parse().map_err(|error| {
        invalid(format!(
            "{} is not a valid URL: {error}",
            redact_url(&target.url)
        ))
    })?;
    let secure = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("wss") => true,
        Some(scheme) if scheme.eq_ignore_ascii_case("ws") => false,
        _ => {
            return Err(invalid(format!(
                "{} is not a ws:// or wss:// URL",
                redact_url(&target.url)
            )));
        }
    };
    let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
        return Err(invalid(format!("{} has no host", redact_url(&target.url))));
    };
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tls = if secure {
        Some(
            tls_cache::config_for(config.tls.clone())
                .await
                .map_err(|reason| EndReason::TlsConfig { reason })?,
        )
    } else {
        None
    };
    let proxy = match config.proxy.as_deref() {
        None => None,
        Some(setting) => setting
            .resolve(&bare_host, port, secure, &|name| std::env::var(name).ok())
            .map_err(|error| invalid(error.to_string()))?,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = crate::proxy::authority(&bare_host, port);
    let host_header = match uri.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Prepared {
        request_url: format!("ws://{authority}{path}"),
        host: host_header,
        headers: target.headers,
        dial: Rc::new(Dial {
            host: bare_host,
            port,
            proxy,
            connect_timeout: config.connect_timeout,
            tls,
            stage,
        }),
    })
}

/// The URL and headers with every file-held value as the file is now.
async fn current_secrets(
    config: &ConnectionConfig,
) -> Result<(String, Vec<(String, String)>), EndReason> {
    let mut url = config.url.clone();
    let mut headers = config.headers.clone();
    if config.file_secrets.is_empty() {
        return Ok((url, headers));
    }
    let paths = config.file_secrets.iter().map(|s| s.path.clone()).collect();
    let values = read_secret_files(paths).await;
    for (secret, value) in config.file_secrets.iter().zip(values) {
        let value = value.map_err(|reason| EndReason::SecretUnavailable { reason })?;
        match secret.slot {
            SecretSlot::Url => url = value,
            SecretSlot::Header(index) => {
                if let Some((_, slot)) = headers.get_mut(index) {
                    *slot = value;
                }
            }
        }
    }
    Ok((url, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> Rc<Cell<ConnectStage>> {
        Rc::new(Cell::new(ConnectStage::Prepare))
    }

    #[actix_rt::test]
    async fn awc_is_handed_a_plain_url_with_the_port_and_the_host_header_as_written() {
        let config = ConnectionConfig::new("wss://user:pw@[::1]/feed?key=k");
        let prepared = prepare(&config, stage()).await.unwrap();
        assert_eq!(prepared.request_url, "ws://[::1]:443/feed?key=k");
        assert_eq!(prepared.host, "[::1]");
        assert_eq!(
            (prepared.dial.host.as_str(), prepared.dial.port),
            ("::1", 443)
        );
        assert!(prepared.dial.tls.is_some());
        let plain = prepare(&ConnectionConfig::new("ws://127.0.0.1:9001"), stage())
            .await
            .unwrap();
        assert_eq!(plain.request_url, "ws://127.0.0.1:9001/");
        assert_eq!(plain.host, "127.0.0.1:9001");
        assert!(plain.dial.tls.is_none());
    }

    #[actix_rt::test]
    async fn the_hook_chooses_the_target_and_its_error_fails_the_attempt() {
        let hook: ConnectHook = Arc::new(|mut target: ConnectTarget| {
            Box::pin(async move {
                target.url.push_str("?listenKey=fresh");
                target.set_header("authorization", "Bearer new");
                Ok(target)
            })
        });
        let config = ConnectionConfig::new("ws://127.0.0.1:9/ws")
            .header("Authorization", "Bearer old")
            .on_connect(hook);
        let prepared = prepare(&config, stage()).await.unwrap();
        assert_eq!(prepared.request_url, "ws://127.0.0.1:9/ws?listenKey=fresh");
        assert_eq!(
            prepared.headers,
            [("authorization".to_owned(), "Bearer new".to_owned())]
        );

        let failing: ConnectHook =
            Arc::new(|_| Box::pin(async { Err("the key service said 503".to_owned()) }));
        let config = ConnectionConfig::new("ws://127.0.0.1:9/ws").on_connect(failing);
        let end = prepare(&config, stage()).await.err().unwrap();
        assert_eq!(
            end,
            EndReason::HookFailed {
                reason: "the key service said 503".into()
            }
        );
        assert_eq!(end.stage(), Some(ConnectStage::Prepare));
    }

    #[actix_rt::test]
    async fn a_hook_that_returns_a_url_of_another_scheme_is_an_invalid_request_without_secrets() {
        let hook: ConnectHook = Arc::new(|mut target: ConnectTarget| {
            Box::pin(async move {
                target.url = "http://h.example/?token=s3cret".into();
                Ok(target)
            })
        });
        let config = ConnectionConfig::new("ws://127.0.0.1:9/").on_connect(hook);
        let end = prepare(&config, stage()).await.err().unwrap();
        let shown = end.to_string();
        assert!(
            shown.contains("not a ws://") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
