//! Dialing: the upgrade request, its timeout, and turning awc's errors into end reasons.

use actix::prelude::*;
use actix_codec::Framed;
use awc::BoxedSocket;
use awc::error::WsClientError;
use awc::ws::Codec;

use super::messages::ReleaseReads;
use super::state::SocketState;
use super::{Connection, Reads};
use crate::client::client;
use crate::config::ConnectionConfig;
use crate::event::{ConnectionEvent, EndReason, NetworkCause};
use crate::framed::LeanFramed;
use crate::reader::Reader;
use crate::secret_files::{SecretSlot, read_secret_files};
use crate::split::split_local;
use crate::stats::ConnectionStats;
use crate::tls::{tls_failure, tls_interrupted};

impl Connection {
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        let config = self.config.clone();
        let timeout = config.handshake_timeout;
        let secure = config
            .url
            .get(..4)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss:"));
        let attempt = async move {
            // The TLS files are looked at (and read again if they changed) off the arbiter,
            // within the attempt's timeout: a rotated certificate is used by the next attempt.
            let client = client(config.tls.clone())
                .await
                .map_err(|reason| EndReason::TlsConfig { reason })?;
            // Secrets kept in files likewise: a rotated token is sent by the next attempt.
            let (url, headers) = current_secrets(&config).await?;
            let mut request = client
                .ws(url.as_str())
                .max_frame_size(config.max_frame_size);
            if !config.subprotocols.is_empty() {
                request = request.protocols(config.subprotocols.iter().map(String::as_str));
            }
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            request
                .connect()
                .await
                .map_err(|error| handshake_end(error, secure))
        };
        let attempt = async move { actix_rt::time::timeout(timeout, attempt).await };
        // Spawned, not waited on: the mailbox stays live during the handshake, so a write gets
        // its message back at once and a Close ends the attempt.
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok((response, framed))) => act.opened(response, framed, ctx),
                    Ok(Err(end)) => {
                        act.end = Some(end);
                        ctx.stop();
                    }
                    Err(_) => {
                        act.end = Some(EndReason::HandshakeTimeout { after: timeout });
                        ctx.stop();
                    }
                }),
        );
    }

    fn opened(
        &mut self,
        response: awc::ClientResponse,
        framed: Framed<BoxedSocket, Codec>,
        ctx: &mut Context<Self>,
    ) {
        let protocol = response
            .headers()
            .get(awc::http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let framed = LeanFramed::from_framed(framed, self.config.max_frame_size);
        self.frames_written = Some(framed.frames_written());
        let (sink, source) = split_local(framed);
        self.sink = Some(sink);
        self.set_state(SocketState::Open);
        match &mut self.reads {
            Reads::Held(waiting) => *waiting = Some(source),
            Reads::AtOnce | Reads::Running => {
                self.reads = Reads::Running;
                ctx.spawn(Reader::new(source));
            }
        }
        ConnectionStats::add(&self.stats.opens, 1);
        self.awaiting_live_reply = self.config.live_after.is_some();
        self.emit(ConnectionEvent::Open { protocol }, ctx);
        self.watch(ctx);
    }

    /// Starts reading a socket whose reads were held.
    pub(super) fn release_reads(&mut self, ctx: &mut Context<Self>) {
        if let Reads::Held(waiting) = &mut self.reads
            && let Some(source) = waiting.take()
        {
            self.reads = Reads::Running;
            ctx.spawn(Reader::new(source));
        }
    }
}

impl Handler<ReleaseReads> for Connection {
    type Result = ();

    fn handle(&mut self, _: ReleaseReads, ctx: &mut Context<Self>) {
        self.release_reads(ctx);
    }
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

/// Turns awc's `!Send` error into our own, keeping what a policy needs to classify it;
/// `secure` says the connect had a TLS handshake to fail in.
fn handshake_end(error: WsClientError, secure: bool) -> EndReason {
    use awc::error::{ConnectError, SendRequestError};
    match error {
        WsClientError::InvalidResponseStatus(status) => EndReason::HandshakeRejected {
            status: status.as_u16(),
        },
        WsClientError::SendRequest(SendRequestError::Url(error)) => EndReason::InvalidRequest {
            reason: error.to_string(),
        },
        WsClientError::SendRequest(SendRequestError::Http(error)) => EndReason::InvalidRequest {
            reason: error.to_string(),
        },
        WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(error))) => {
            let tls =
                tls_failure(&error).or_else(|| secure.then(|| tls_interrupted(&error)).flatten());
            connect_failed(tls, error.to_string(), network_cause(&error))
        }
        WsClientError::SendRequest(SendRequestError::Connect(error)) => {
            let cause = match &error {
                ConnectError::Resolver(_) | ConnectError::NoRecords | ConnectError::Unresolved => {
                    Some(NetworkCause::Dns)
                }
                ConnectError::Timeout => Some(NetworkCause::Timeout),
                _ => None,
            };
            connect_failed(tls_failure(&error), error.to_string(), cause)
        }
        WsClientError::SendRequest(error) => {
            let (tls, cause) = match &error {
                // The request could not be written, or no byte of an answer came: the peer
                // reset the connection before it said anything (a plain `ws://` host; for
                // `wss://` a reset ends the TLS handshake first, a `TlsTransient`).
                SendRequestError::Send(io) => (tls_failure(io), reset_before_answer(io)),
                SendRequestError::Response(actix_http::error::ParseError::Io(io)) => {
                    (tls_failure(io), reset_before_answer(io))
                }
                other => (tls_failure(other), None),
            };
            connect_failed(tls, error.to_string(), cause)
        }
        other => EndReason::HandshakeInvalid {
            reason: other.to_string(),
        },
    }
}

/// A failed connect: the TLS failure when there was one, else the underlying error.
fn connect_failed(tls: Option<EndReason>, error: String, cause: Option<NetworkCause>) -> EndReason {
    tls.unwrap_or(EndReason::ConnectFailed {
        reason: error,
        cause,
    })
}

/// The network-level cause of a failed TCP connect.
fn network_cause(error: &std::io::Error) -> Option<NetworkCause> {
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

/// A reset while the upgrade request went out or before any byte of its answer came back.
fn reset_before_answer(error: &std::io::Error) -> Option<NetworkCause> {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
    .then_some(NetworkCause::Reset)
}
