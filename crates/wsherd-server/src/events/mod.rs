//! `GET /api/events`: a WebSocket streaming every state change (the fields of `wsherd run`'s
//! state lines) and, once a second, a stats line for each endpoint whose figures changed. A
//! client gets a stats line for every endpoint first.
//!
//! Each client is bounded ([`EventLimits`](crate::EventLimits)): the lines waiting for it may
//! take at most `buffer` bytes and wait at most `stall_timeout`; past either it is cut. Whatever
//! it sends is read under a 4 KiB frame cap and ignored, but for Ping (answered) and Close.

mod body;
mod hub;
pub(crate) mod lines;
mod outbox;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::State;
use crate::auth::Query;
use crate::errors::json_error;
use crate::socket::SocketHandle;
use body::EventsBody;
use hub::{Hub, Join};
use outbox::Outbox;

/// This worker's hub, started with the first client.
#[derive(Default)]
pub(crate) struct HubSlot(Mutex<Option<Addr<Hub>>>);

impl State {
    fn hub(&self) -> Addr<Hub> {
        let mut slot = self.hub.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(hub) if hub.connected() => hub.clone(),
            _ => {
                let hub = Hub::new(
                    self.herd.clone(),
                    self.options.events,
                    Arc::clone(&self.options.counters),
                )
                .start();
                *slot = Some(hub.clone());
                hub
            }
        }
    }

    /// Takes an event client slot; `false` when all are taken.
    fn reserve_event_client(&self) -> bool {
        let max = self.options.events.max_clients;
        self.options
            .counters
            .event_clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < max).then_some(now + 1)
            })
            .is_ok()
    }
}

/// `GET /api/events`.
pub(crate) async fn events(
    req: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Accepted) {
        return refused;
    }
    let mut response = match crate::errors::upgrade_or_400(&req) {
        Ok(response) => response,
        Err(refused) => return *refused,
    };
    if !state.reserve_event_client() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "already {} /api/events clients, the most this server takes",
                state.options.events.max_clients
            ),
        );
    }
    let outbox = Arc::new(Outbox::new(state.options.events.buffer));
    let initial = state.herd.status();
    let join = Join::new(
        Arc::clone(&outbox),
        req.conn_data::<SocketHandle>().cloned(),
        &initial,
    );
    // From here the body holds the slot, and gives it back when it is dropped.
    let body = EventsBody::new(
        payload,
        outbox,
        initial,
        Arc::clone(&state.options.counters),
    );
    if state.hub().try_send(join).is_err() {
        drop(body);
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event hub is busy; try again",
        );
    }
    response.streaming(body)
}
