//! `[gateway]`: local WebSocket clients subscribe to the herd's messages by topic, get them
//! as `{"endpoint":…,"kind":…,"data":<the upstream text>}`, and may send through the
//! endpoints `allow_send` names. One upstream feed serves any number of local clients; a
//! slow client never slows the feed or the other clients ([`queue`]).
//!
//! Requests (JSON text frames) and answers:
//! - `{"op":"subscribe","topics":["binance/trade","*/quote","state"],"id":1}` →
//!   `{"op":"ack","id":1,"topics":[…]}`; `"unsubscribe"` likewise;
//! - `{"op":"send","endpoint":"binance","data":{…},"id":2}` →
//!   `{"op":"ack","id":2,"status":"writing"|"queued"}` or `{"op":"error","id":2,"error":…}`;
//! - anything else → `{"op":"error","id":…,"error":…}`, and the session goes on.

mod body;
mod queue;
mod relay;
mod topics;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use wsherd::config::GatewaySettings;

use crate::State;
use crate::auth::{Query, token_refusal};
use crate::errors::{json_error, shown, upgrade_or_400};
use crate::socket::SocketHandle;
use body::GatewayBody;
use queue::SessionQueue;
pub(crate) use relay::Registry;
use relay::Session;

/// `GET <gateway path>`.
pub(crate) async fn session(
    req: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> HttpResponse {
    let Some(settings) = state.options.gateway.clone() else {
        return json_error(StatusCode::NOT_FOUND, "no gateway");
    };
    if let Some(token) = &settings.token
        && let Some(refused) = token_refusal(&req, token, Query::Accepted)
    {
        return refused;
    }
    if let Some(refused) = origin_refusal(&req, &settings) {
        return refused;
    }
    let registry = Arc::clone(&state.gateway);
    let max = settings.max_sessions;
    if registry
        .count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now < max).then_some(now + 1)
        })
        .is_err()
    {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the gateway holds {max} sessions, its most; try again later"),
        );
    }
    let response = match upgrade_or_400(&req) {
        Ok(response) => response,
        Err(refused) => {
            registry.count.fetch_sub(1, Ordering::AcqRel);
            return *refused;
        }
    };
    let session = Arc::new(Session::new(
        SessionQueue::new(settings.max_buffer, settings.overflow),
        req.conn_data::<SocketHandle>().cloned(),
        Arc::clone(&state.options.counters),
    ));
    state
        .options
        .counters
        .gateway_sessions
        .fetch_add(1, Ordering::Relaxed);
    registry.join(&state.herd, Arc::clone(&session));
    // From here the body holds the slot, and gives it back when it is dropped.
    let body = GatewayBody::new(payload, session, registry, settings, state.herd.clone());
    let mut response = response;
    response.streaming(body)
}

/// A browser's request from an origin the gateway does not allow: `403`. A request without
/// `Origin` comes from no browser (a browser always sends it with a WebSocket) and passes.
///
/// The server's own origin counts only when the browser reached it by address or as
/// `localhost`: a page that rebinds its own domain name to this server's address sends its
/// own name as both `Origin` and `Host`, and must be named in `allowed_origins` to pass.
fn origin_refusal(req: &HttpRequest, settings: &GatewaySettings) -> Option<HttpResponse> {
    let origin = req.headers().get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let own = req.connection_info();
    let same = format!("{}://{}", own.scheme(), own.host());
    let allowed = (origin.eq_ignore_ascii_case(&same) && by_address(own.host()))
        || settings.allowed_origins.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        });
    (!allowed).then(|| {
        json_error(
            StatusCode::FORBIDDEN,
            format!(
                "origin {} is not allowed: add it to gateway.allowed_origins",
                shown(origin)
            ),
        )
    })
}

/// Whether `host` (a `Host` header: name or address, maybe a port) is an IP address or
/// `localhost`, which no other site's page can rebind to.
fn by_address(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true; // an IPv6 address without brackets or port
    }
    let name = match host.rsplit_once(':') {
        // `[::1]:9090`, `127.0.0.1:9090`, `localhost:9090`
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::by_address;

    #[test]
    fn only_addresses_and_localhost_count_as_reached_by_address() {
        for host in [
            "127.0.0.1:9090",
            "[::1]:9090",
            "::1",
            "localhost",
            "LOCALHOST:1",
            "10.0.0.2",
        ] {
            assert!(by_address(host), "{host}");
        }
        for host in ["evil.example", "evil.example:9090", "127.0.0.1.nip.io"] {
            assert!(!by_address(host), "{host}");
        }
    }
}
