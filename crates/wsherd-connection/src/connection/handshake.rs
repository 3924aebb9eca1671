//! The attempt: prepare, dial, upgrade, all within the handshake timeout; and turning awc's
//! errors into end reasons.

use std::cell::Cell;
use std::rc::Rc;

use actix::prelude::*;
use actix_codec::Framed;
use awc::BoxedSocket;
use awc::error::WsClientError;
use awc::ws::Codec;

use super::messages::ReleaseReads;
use super::state::SocketState;
use super::{Connection, Reads};
use crate::accepted::AcceptedSocket;
use crate::client::client;
use crate::deflate::Negotiated;
use crate::dial::{DialFailed, dialing};
use crate::event::{ConnectStage, ConnectionEvent, EndReason, NetworkCause};
use crate::framed::LeanFramed;
use crate::inflate::MessageInflater;
use crate::prepare::prepare;
use crate::reader::Reader;
use crate::socket::Socket;
use crate::split::split_local;
use crate::stats::ConnectionStats;
use crate::tls::tls_failure;

impl Connection {
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        let config = self.config.clone();
        let timeout = config.handshake_timeout;
        let stage = Rc::new(Cell::new(ConnectStage::Prepare));
        let progress = Rc::clone(&stage);
        let attempt = async move {
            // Secrets and TLS files are looked at (and read again if they changed) off the
            // arbiter, the hook is asked, within the attempt's timeout: a rotated token or
            // certificate is used by the next attempt.
            let prepared = prepare(&config, stage).await?;
            let mut request = client()
                .ws(prepared.request_url.as_str())
                .max_frame_size(config.max_frame_size);
            if !config.subprotocols.is_empty() {
                request = request.protocols(config.subprotocols.iter().map(String::as_str));
            }
            if !prepared
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("host"))
            {
                request = request.header("Host", prepared.host.as_str());
            }
            for (name, value) in &prepared.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some(offer) = &config.compression
                && !prepared
                    .headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            {
                request = request.header("Sec-WebSocket-Extensions", offer.header());
            }
            dialing(prepared.dial, request.connect())
                .await
                .map_err(handshake_end)
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
                        act.end = Some(Box::new(end));
                        ctx.stop();
                    }
                    Err(_) => {
                        act.end = Some(Box::new(EndReason::HandshakeTimeout {
                            after: timeout,
                            stage: progress.get(),
                        }));
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
        let framed = framed.into_map_io(Socket::Dialed);
        let mut framed = LeanFramed::from_framed(framed, self.config.max_frame_size);
        let compression = match self.negotiate(&response) {
            Ok(Some(negotiated)) => {
                framed.accept_compressed();
                if let Some(offer) = &self.config.compression
                    && let Some(outbound) = crate::deflate::Outbound::new(offer, &negotiated)
                {
                    framed.compress_outbound(outbound);
                }
                self.message_inflater = Some(Box::new(MessageInflater::new(&negotiated)));
                Some(negotiated)
            }
            Ok(None) => None,
            Err(reason) => {
                // The socket is dropped unused: this client cannot read what the server
                // would send on it.
                self.end = Some(Box::new(EndReason::ExtensionInvalid { reason }));
                ctx.stop();
                return;
            }
        };
        self.begin_life(framed, protocol, compression, ctx);
    }

    /// Takes over a socket a server accepted: open at once, with `protocol` as agreed.
    pub(super) fn open_accepted(
        &mut self,
        socket: AcceptedSocket,
        protocol: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let framed = LeanFramed::server(Socket::Accepted(socket), self.config.max_frame_size);
        self.begin_life(framed, protocol, None, ctx);
    }

    /// The socket is open: reads start (or wait to be released), the open is announced and
    /// the heartbeat watches it.
    fn begin_life(
        &mut self,
        framed: LeanFramed<Socket>,
        protocol: Option<String>,
        compression: Option<Negotiated>,
        ctx: &mut Context<Self>,
    ) {
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
        self.emit(
            ConnectionEvent::Open {
                protocol,
                compression,
            },
            ctx,
        );
        self.watch(ctx);
    }

    /// What the server's `Sec-WebSocket-Extensions` answer agreed to; an extension in it
    /// that was never offered is an error.
    fn negotiate(&self, response: &awc::ClientResponse) -> Result<Option<Negotiated>, String> {
        let answers: Vec<&str> = response
            .headers()
            .get_all(awc::http::header::SEC_WEBSOCKET_EXTENSIONS)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
            .collect();
        match &self.config.compression {
            Some(offer) => offer.accept(&answers),
            None if answers.iter().all(|a| a.trim().is_empty()) => Ok(None),
            None => Err("the server accepted an extension, and none was offered".into()),
        }
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

/// Turns awc's `!Send` error into our own, keeping what a policy needs to classify it. The
/// dial's own failures (DNS, TCP, proxy, TLS) come back whole; what remains is the upgrade.
fn handshake_end(error: WsClientError) -> EndReason {
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
            match error
                .into_inner()
                .map(|inner| inner.downcast::<DialFailed>())
            {
                Some(Ok(failed)) => failed.0,
                Some(Err(other)) => EndReason::ConnectFailed {
                    reason: other.to_string(),
                    cause: None,
                },
                None => EndReason::ConnectFailed {
                    reason: "connect failed".to_owned(),
                    cause: None,
                },
            }
        }
        // The dial is done by now: what awc's connector says else is about the upgrade.
        WsClientError::SendRequest(SendRequestError::Connect(error)) => EndReason::UpgradeFailed {
            reason: error.to_string(),
            cause: None,
        },
        WsClientError::SendRequest(error) => {
            // TLS 1.3 finishes the client's side of the handshake before the server has
            // checked the client's certificate: its refusal (an alert) arrives while the
            // upgrade is read, and is a TLS failure all the same.
            let (tls, cause) = match &error {
                // The request could not be written, or no byte of an answer came: the peer
                // reset the connection before it said anything.
                SendRequestError::Send(io) => (tls_failure(io), reset_before_answer(io)),
                SendRequestError::Response(actix_http::error::ParseError::Io(io)) => {
                    (tls_failure(io), reset_before_answer(io))
                }
                other => (tls_failure(other), None),
            };
            tls.unwrap_or(EndReason::UpgradeFailed {
                reason: error.to_string(),
                cause,
            })
        }
        other => EndReason::HandshakeInvalid {
            reason: other.to_string(),
        },
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
