//! Inbound endpoints' paths: a client's upgrade becomes a session of the herd.
//!
//! The handler checks the endpoint's own auth (a token, or the application's hook), answers
//! the upgrade, and hands the socket to the herd ([`Herd::accept_session`]), which runs the
//! session's connection on one of its arbiters like any endpoint's. What the HTTP worker
//! keeps is two byte pipes ([`SocketWire`]): a task reads the client into one, and the
//! response body writes the other out. actix-http polls a response body only while its write
//! buffer has room, so a client that stops reading freezes the body, never the session: its
//! heartbeat and write timeout still run, and when the session's connection ends the client
//! is cut ([`SocketHandle`]) if the body does not end by itself within [`CUT_AFTER`].
//!
//! [`Herd::accept_session`]: wsherd::Herd::accept_session

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_core::Stream;
use wsherd::config::InboundAuth;
use wsherd::{DEFAULT_PIPE_CAPACITY, Feed, SocketWire, accepted_socket};

use crate::State;
use crate::auth::{Query, token_refusal};
use crate::errors::{json_error, upgrade_or_400};
use crate::socket::SocketHandle;

/// How long a session's response body may take to end once its connection is gone (the
/// Close frame going out) before the client's socket is cut.
pub(crate) const CUT_AFTER: Duration = Duration::from_secs(2);

/// Which inbound endpoint a route serves.
pub(crate) struct InboundRoute(pub(crate) String);

/// `GET <path>` of an inbound endpoint.
pub(crate) async fn session(
    req: HttpRequest,
    state: web::Data<State>,
    route: web::Data<InboundRoute>,
    payload: web::Payload,
) -> HttpResponse {
    let name = route.0.as_str();
    let Some(endpoint) = state.herd.inbound_endpoint(name) else {
        return json_error(StatusCode::NOT_FOUND, format!("no inbound endpoint {name}"));
    };
    let path_id = req.match_info().get("id").unwrap_or_default();
    let id = match endpoint.auth() {
        InboundAuth::None => path_id.to_owned(),
        InboundAuth::Token(token) => {
            if let Some(refused) = token_refusal(&req, token, Query::Accepted) {
                endpoint.count_refusal("unauthorized");
                return refused;
            }
            path_id.to_owned()
        }
        InboundAuth::Hook => match state.options.inbound_hooks.get(name) {
            Some(hook) => match hook(&req, path_id) {
                Ok(id) => id,
                Err(refusal) => {
                    endpoint.count_refusal("hook");
                    tracing::debug!(
                        inbound = name,
                        status = refusal.status.as_u16(),
                        "refused by the auth hook"
                    );
                    return json_error(refusal.status, refusal.reason);
                }
            },
            None => {
                endpoint.count_refusal("no_hook");
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "inbound endpoint {name} has auth = \"hook\" and no hook was given (ServerOptions::inbound_auth)"
                    ),
                );
            }
        },
    };
    let mut response = match upgrade_or_400(&req) {
        Ok(response) => response,
        Err(refused) => return *refused,
    };
    let (socket, wire) = accepted_socket(DEFAULT_PIPE_CAPACITY);
    match state.herd.accept_session(name, &id, socket, None).await {
        Err(refused) => {
            tracing::debug!(inbound = name, "session refused: {refused}");
            let status =
                StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            json_error(status, refused.to_string())
        }
        Ok(session) => {
            tracing::debug!(%session, "session accepted");
            let wire = Arc::new(wire);
            let ended = Arc::new(AtomicBool::new(false));
            actix_rt::spawn(read_client(
                payload,
                Arc::clone(&wire),
                req.conn_data::<SocketHandle>().cloned(),
                Arc::clone(&ended),
            ));
            response.streaming(SessionBody { wire, ended })
        }
    }
}

/// Moves what the client sends into the session's pipe, as fast as the session reads it;
/// once the session's connection is gone, cuts the client if its body did not end.
async fn read_client(
    mut payload: web::Payload,
    wire: Arc<SocketWire>,
    socket: Option<SocketHandle>,
    ended: Arc<AtomicBool>,
) {
    loop {
        let next = std::future::poll_fn(|cx| {
            match wire.poll_feed(cx) {
                Poll::Ready(Feed::Gone) => return Poll::Ready(None),
                Poll::Ready(Feed::Ready) => {}
                Poll::Pending => {
                    // Full: wait for the session to read, unless it goes away meanwhile.
                    return match wire.poll_gone(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
            if wire.poll_gone(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut payload).poll_next(cx).map(Some)
        })
        .await;
        match next {
            Some(Some(Ok(chunk))) => wire.feed(chunk),
            // The client's stream ended or failed: the session reads its end.
            Some(Some(Err(_)) | None) => {
                wire.client_done();
                break;
            }
            // The session's connection is gone.
            None => break,
        }
    }
    std::future::poll_fn(|cx| wire.poll_gone(cx)).await;
    actix_rt::time::sleep(CUT_AFTER).await;
    if !ended.load(Ordering::Acquire)
        && let Some(socket) = socket
    {
        // The body never got to end: the client stopped reading. Its connection goes now.
        socket.cut();
    }
}

/// What the session writes, as the response body.
struct SessionBody {
    wire: Arc<SocketWire>,
    ended: Arc<AtomicBool>,
}

impl Stream for SessionBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.wire.poll_take(cx) {
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(None) => {
                self.ended.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
