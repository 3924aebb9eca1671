//! Opening the transport of one attempt: DNS, TCP to each resolved address in turn (each
//! within `connect_timeout`), the proxy's tunnel, TLS with the server's name. awc then speaks
//! the HTTP upgrade over the finished stream.
//!
//! awc asks its connector for a stream knowing only the URL; what an attempt needs beyond it
//! (the proxy, the timeouts, the TLS configuration, where to record its progress) travels in
//! a [`Dial`] that [`dialing`] makes current on this thread for exactly the polls of the
//! attempt's future. awc calls the connector inside those polls (its pool and connector
//! futures are polled inline, never spawned), so the connector always finds its own attempt's
//! dial, and nothing is shared between attempts (checked against awc 3.11: the pool acquires
//! its permit and calls the connector inline, and a WebSocket's connection never goes back to
//! the pool). A connect outside [`dialing`] fails with a clear error instead of guessing.

mod transport;
mod tunnel;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_tls::connect::{ConnectError as TcpConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

pub(crate) use transport::Transport;
use tunnel::{TunnelError, TunnelTarget};

use crate::event::{ConnectStage, EndReason, NetworkCause};
use crate::proxy::{ProxyKind, ProxyUrl};
use crate::tls::{tls_failure, tls_interrupted};

/// What one attempt needs to open its transport.
pub(crate) struct Dial {
    /// The server's host (an IPv6 address without brackets) and port.
    pub(crate) host: String,
    /// The server's port.
    pub(crate) port: u16,
    /// The proxy for this attempt, if any.
    pub(crate) proxy: Option<ProxyUrl>,
    /// Bound on each TCP connect and on the proxy's answer.
    pub(crate) connect_timeout: Duration,
    /// TLS for `wss://`.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// How far the attempt got, read when the whole attempt times out.
    pub(crate) stage: Rc<Cell<ConnectStage>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Dial>>> = const { RefCell::new(None) };
}

/// Runs `attempt` with `dial` current during each of its polls.
pub(crate) async fn dialing<F: Future>(dial: Rc<Dial>, attempt: F) -> F::Output {
    let mut attempt = std::pin::pin!(attempt);
    std::future::poll_fn(move |cx| {
        let _current = Current::enter(Rc::clone(&dial));
        attempt.as_mut().poll(cx)
    })
    .await
}

/// Makes a dial current until dropped, then restores what was current before (a poll can
/// nest in another only through a nested executor, but restoring costs nothing).
struct Current(Option<Rc<Dial>>);

impl Current {
    fn enter(dial: Rc<Dial>) -> Current {
        Current(CURRENT.with(|current| current.replace(Some(dial))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The connector awc is built with: it opens the current dial's transport.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialer;

/// A failed dial, carried through awc's error (an `io::Error`) to the handshake's end.
#[derive(Debug)]
pub(crate) struct DialFailed(pub(crate) EndReason);

impl std::fmt::Display for DialFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DialFailed {}

impl actix_service::Service<ConnectInfo<Uri>> for Dialer {
    type Response = Connection<Uri, Transport>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        let dial = CURRENT.with(|current| current.borrow().clone());
        let uri = info.request().clone();
        Box::pin(async move {
            let failed = |reason| TcpConnectError::Io(io::Error::other(DialFailed(reason)));
            let Some(dial) = dial else {
                return Err(failed(EndReason::ConnectFailed {
                    reason: "a connect outside an attempt (wsherd's connector needs its dial)"
                        .into(),
                    cause: None,
                }));
            };
            let transport = dial.open().await.map_err(failed)?;
            Ok(Connection::new(uri, transport))
        })
    }
}

impl Dial {
    /// TCP (direct or tunnelled), then TLS when asked for.
    async fn open(&self) -> Result<Transport, EndReason> {
        // The proxy and TLS steps are boxed: their state (answer buffers, the TLS session
        // being built) is large, and a direct `ws://` attempt should not carry it.
        let tcp = match &self.proxy {
            None => self.direct().await?,
            Some(proxy) => Box::pin(self.tunnel(proxy)).await?,
        };
        // Small frames (pings, acknowledgements, subscriptions) go out at once.
        let _ = tcp.set_nodelay(true);
        let transport = match &self.tls {
            None => Transport::Plain(tcp),
            Some(config) => {
                self.stage.set(ConnectStage::Tls);
                let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                    EndReason::InvalidRequest {
                        reason: format!("{:?} is not a name TLS can check", self.host),
                    }
                })?;
                let tls = Box::pin(
                    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp),
                )
                .await
                .map_err(|error| {
                    tls_failure(&error)
                        .or_else(|| tls_interrupted(&error))
                        .unwrap_or_else(|| match network_cause(&error) {
                            // The network failed under the handshake (no route, timed out):
                            // what the outage mode counts.
                            Some(cause) => EndReason::ConnectFailed {
                                reason: format!("during the TLS handshake: {error}"),
                                cause: Some(cause),
                            },
                            None => EndReason::TlsTransient {
                                reason: error.to_string(),
                            },
                        })
                })?;
                Transport::Tls(Box::new(tls))
            }
        };
        self.stage.set(ConnectStage::Upgrade);
        Ok(transport)
    }

    /// Every address of the server's host (the dns stage).
    async fn resolve_server(&self) -> Result<Vec<SocketAddr>, EndReason> {
        self.stage.set(ConnectStage::Dns);
        resolve(&self.host, self.port)
            .await
            .map_err(|reason| EndReason::ConnectFailed {
                reason,
                cause: Some(NetworkCause::Dns),
            })
    }

    /// Straight to the server: resolve, then each address in turn.
    async fn direct(&self) -> Result<TcpStream, EndReason> {
        let addresses = self.resolve_server().await?;
        self.stage.set(ConnectStage::Tcp);
        connect_any(&addresses, self.connect_timeout)
            .await
            .map_err(|(reason, cause)| EndReason::ConnectFailed { reason, cause })
    }

    /// Through `proxy`: reach it, then ask it for a tunnel to the server (for `socks5://`,
    /// to each of the server's addresses in turn, resolved here).
    async fn tunnel(&self, proxy: &ProxyUrl) -> Result<TcpStream, EndReason> {
        let literal = self.host.parse::<std::net::IpAddr>().ok();
        let targets: Vec<TunnelTarget<'_>> = match (proxy.kind, literal) {
            // An address needs no resolving, and SOCKS5 sends it as an address either way.
            (ProxyKind::Socks5 | ProxyKind::Socks5h, Some(address)) => {
                vec![TunnelTarget::Address(SocketAddr::new(address, self.port))]
            }
            (ProxyKind::Http | ProxyKind::Socks5h, _) => {
                vec![TunnelTarget::Name(&self.host, self.port)]
            }
            (ProxyKind::Socks5, None) => self
                .resolve_server()
                .await?
                .into_iter()
                .map(TunnelTarget::Address)
                .collect(),
        };
        self.stage.set(ConnectStage::Proxy);
        let mut refusals = Vec::new();
        for target in targets {
            match self.through(proxy, target).await {
                Ok(stream) => return Ok(stream),
                // The proxy could not reach this address; the next one may do.
                Err(EndReason::ProxyRefused { reason }) => refusals.push(reason),
                Err(other) => return Err(other),
            }
        }
        Err(EndReason::ProxyRefused {
            reason: refusals.join("; "),
        })
    }

    /// One tunnel through `proxy` to `target`.
    async fn through(
        &self,
        proxy: &ProxyUrl,
        target: TunnelTarget<'_>,
    ) -> Result<TcpStream, EndReason> {
        let unreachable = |reason: String, cause| EndReason::ProxyFailed {
            reason: format!("cannot reach the proxy {proxy}: {reason}"),
            cause,
        };
        let addresses = resolve(&proxy.host, proxy.port)
            .await
            .map_err(|reason| unreachable(reason, Some(NetworkCause::Dns)))?;
        let mut stream = connect_any(&addresses, self.connect_timeout)
            .await
            .map_err(|(reason, cause)| unreachable(reason, cause))?;
        let credentials = proxy.credentials.as_ref();
        let opening = async {
            match proxy.kind {
                ProxyKind::Http => tunnel::http_connect(&mut stream, target, credentials).await,
                ProxyKind::Socks5 | ProxyKind::Socks5h => {
                    tunnel::socks5(&mut stream, target, credentials).await
                }
            }
        };
        match actix_rt::time::timeout(self.connect_timeout, opening).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(TunnelError::Auth(reason))) => Err(EndReason::ProxyAuth {
                reason: format!("{proxy}: {reason}"),
            }),
            Ok(Err(TunnelError::Refused(reason))) => Err(EndReason::ProxyRefused {
                reason: format!("{proxy} to {}: {reason}", target.authority()),
            }),
            Ok(Err(TunnelError::Invalid(reason))) => Err(EndReason::ProxyFailed {
                reason: format!("{proxy}: {reason}"),
                cause: None,
            }),
            Ok(Err(TunnelError::Io(error))) => Err(EndReason::ProxyFailed {
                reason: format!("{proxy}: {error}"),
                cause: None,
            }),
            Err(_) => Err(EndReason::ProxyFailed {
                reason: format!(
                    "{proxy} did not answer within the connect timeout ({:?})",
                    self.connect_timeout
                ),
                cause: None,
            }),
        }
    }
}

/// Every address of `host` (an address itself needs no lookup), resolved on the blocking
/// pool, never on the arbiter.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(address) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(address, port)]);
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| format!("cannot resolve {host:?}: {error}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("{host:?} has no addresses"));
    }
    Ok(addresses)
}

/// A TCP connection to the first of `addresses` that takes one, each given `timeout`;
/// otherwise what each said and the network-level cause of the last.
async fn connect_any(
    addresses: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, (String, Option<NetworkCause>)> {
    let mut failures = Vec::with_capacity(addresses.len());
    let mut cause = None;
    for address in addresses {
        match actix_rt::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => {
                cause = network_cause(&error);
                failures.push(format!("{address}: {error}"));
            }
            Err(_) => {
                cause = Some(NetworkCause::Timeout);
                failures.push(format!("{address}: no answer within {timeout:?}"));
            }
        }
    }
    Err((failures.join("; "), cause))
}

/// The network-level cause of a failed TCP connect.
pub(crate) fn network_cause(error: &io::Error) -> Option<NetworkCause> {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => Some(NetworkCause::Refused),
        ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::NetworkDown
        | ErrorKind::AddrNotAvailable => Some(NetworkCause::Unreachable),
        ErrorKind::TimedOut => Some(NetworkCause::Timeout),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Some(NetworkCause::Reset),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[actix_rt::test]
    async fn every_address_is_tried_in_turn_until_one_takes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        // A port nothing listens on: bound, then let go.
        let refused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stream = connect_any(&[refused, good], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);

        let (reason, cause) = connect_any(&[refused, refused], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(cause, Some(NetworkCause::Refused));
        assert_eq!(reason.matches(&refused.to_string()).count(), 2, "{reason}");
    }

    #[actix_rt::test]
    async fn an_address_needs_no_lookup() {
        assert_eq!(
            resolve("::1", 9).await.unwrap(),
            vec!["[::1]:9".parse::<SocketAddr>().unwrap()]
        );
    }
}
