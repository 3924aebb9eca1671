//! Inbound endpoints and their sessions: a client that connects in becomes endpoint
//! `<inbound>:<id>`, supervised like any other (same router, status, sends by name), whose
//! socket the server accepted.
//!
//! The server (`wsherd-server`) answers the upgrade and hands the socket over with
//! [`Herd::accept_session`]. A session lives as long as its supervisor: through reconnects of
//! the same id within the resume window, until the window passes with no client (then it
//! forgets itself here, [`Supervisor::on_stopped`]), or until it is stopped or removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use wsherd_connection::AcceptedSocket;
use wsherd_protocol::{EndpointName, InvalidEndpointName};
use wsherd_supervisor::{
    Attach, AttachRefused, EndpointShared, EndpointState, Supervisor, Unattached,
};

use super::{Endpoint, Endpoints, Herd, Settings};
use crate::config::{EndpointConfig, InboundAuth, InboundConfig, OnDuplicate};
use crate::error::HerdError;

/// One inbound endpoint: its settings and how many sessions it holds.
#[derive(Debug)]
pub struct InboundEndpoint {
    name: EndpointName,
    config: InboundConfig,
    settings: Settings,
    sessions: AtomicUsize,
    /// What sessions that ended had counted: the endpoint's totals go on without them.
    pub(super) retired: std::sync::Mutex<Totals>,
}

/// Counters of an inbound endpoint's sessions, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) messages_in: u64,
    pub(super) bytes_in: u64,
    pub(super) messages_out: u64,
    pub(super) bytes_out: u64,
    pub(super) dead_letters: u64,
}

impl Totals {
    pub(super) fn add(&mut self, stats: &wsherd_connection::StatsSnapshot) {
        self.messages_in = self.messages_in.saturating_add(stats.messages_in);
        self.bytes_in = self.bytes_in.saturating_add(stats.bytes_in);
        self.messages_out = self.messages_out.saturating_add(stats.messages_out);
        self.bytes_out = self.bytes_out.saturating_add(stats.bytes_out);
        self.dead_letters = self.dead_letters.saturating_add(stats.dead_letters);
    }
}

impl InboundEndpoint {
    /// Its name (`devices`; sessions are `devices:<id>`).
    pub fn name(&self) -> &EndpointName {
        &self.name
    }

    /// The path clients connect to, with its `{id}` segment.
    pub fn path(&self) -> &str {
        &self.config.path
    }

    /// Who may open a session.
    pub fn auth(&self) -> &InboundAuth {
        &self.config.auth
    }

    /// Whether clients are taken (`enabled = false` refuses them).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The most sessions it holds.
    pub fn max_sessions(&self) -> usize {
        self.config.max_sessions
    }

    /// Sessions it holds now, connected or within their resume window.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// The settings it was configured with.
    pub fn config(&self) -> &InboundConfig {
        &self.config
    }

    /// Counts a client turned away before it reached [`Herd::accept_session`] (a server's
    /// auth check: `reason` such as `"unauthorized"`), in `wsherd_inbound_refused_total`
    /// beside the refusals `accept_session` counts itself ([`SessionRefused::reason`]).
    pub fn count_refusal(&self, reason: &'static str) {
        metrics::counter!(
            "wsherd_inbound_refused_total",
            "endpoint" => self.name.to_string(),
            "reason" => reason,
        )
        .increment(1);
    }
}

/// Why a client was not taken as a session; the HTTP status a server answers it with is
/// [`SessionRefused::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRefused {
    /// No inbound endpoint has that name.
    #[error("no inbound endpoint named {0:?}")]
    UnknownInbound(String),
    /// The inbound endpoint is disabled.
    #[error("inbound endpoint {0} is disabled")]
    Disabled(EndpointName),
    /// The id cannot name a session.
    #[error("{}", .0.why)]
    InvalidId(InvalidEndpointName),
    /// The inbound endpoint holds its most sessions.
    #[error("inbound endpoint {name} holds {max} sessions, its most")]
    TooMany {
        /// The inbound endpoint.
        name: EndpointName,
        /// Its `max_sessions`.
        max: usize,
    },
    /// A client is connected under this id and `on_duplicate = "refuse"`.
    #[error("session {0} is connected already")]
    Connected(EndpointName),
    /// The owner paused the session.
    #[error("session {0} is paused")]
    Paused(EndpointName),
    /// The session was ending as the client came; connecting again starts a new one.
    #[error("session {0} is ending; try again")]
    Ending(EndpointName),
    /// The herd is shutting down ([`Herd::shutdown`]): no new sessions.
    #[error("the herd is shutting down")]
    ShuttingDown,
}

impl SessionRefused {
    /// Its label in `wsherd_inbound_refused_total`: `unknown_inbound`, `disabled`,
    /// `invalid_id`, `too_many`, `connected`, `paused`, `ending`, `shutting_down`.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionRefused::UnknownInbound(_) => "unknown_inbound",
            SessionRefused::Disabled(_) => "disabled",
            SessionRefused::InvalidId(_) => "invalid_id",
            SessionRefused::TooMany { .. } => "too_many",
            SessionRefused::Connected(_) => "connected",
            SessionRefused::Paused(_) => "paused",
            SessionRefused::Ending(_) => "ending",
            SessionRefused::ShuttingDown => "shutting_down",
        }
    }

    /// The HTTP status a server refuses the upgrade with.
    pub fn status(&self) -> u16 {
        match self {
            SessionRefused::UnknownInbound(_) => 404,
            SessionRefused::InvalidId(_) => 400,
            SessionRefused::Connected(_) => 409,
            SessionRefused::Paused(_) | SessionRefused::Disabled(_) => 403,
            SessionRefused::TooMany { .. }
            | SessionRefused::Ending(_)
            | SessionRefused::ShuttingDown => 503,
        }
    }
}

impl Herd {
    /// Adds inbound endpoint `name`: clients that connect to its path become its sessions
    /// (a server such as `wsherd-server` serves it). Errors if one of that name exists, or
    /// its settings cannot run.
    pub fn add_inbound(&self, name: EndpointName, config: InboundConfig) -> Result<(), HerdError> {
        if name.session_id().is_some() {
            return Err(HerdError::InvalidName(InvalidEndpointName {
                name: name.to_string(),
                why: "':' is kept for the sessions of inbound endpoints",
            }));
        }
        if let Err(error) = config.spec.validate() {
            return Err(HerdError::InvalidSpec { name, error });
        }
        let mut inbound = self.inbound_lock();
        if inbound.contains_key(&name) {
            return Err(HerdError::DuplicateEndpoint(name));
        }
        let mut spec = config.spec.clone();
        // A session never dials: no rotation (it would open a socket of its own).
        spec.max_lifetime = None;
        if spec.connect.resume_window().is_none() {
            spec.connect = wsherd_supervisor::ConnectMode::Inbound {
                resume_window: crate::config::DEFAULT_RESUME_WINDOW,
            };
        }
        let endpoint = InboundEndpoint {
            name: name.clone(),
            settings: Settings::from(EndpointConfig::new(spec)),
            config,
            sessions: AtomicUsize::new(0),
            retired: std::sync::Mutex::default(),
        };
        inbound.insert(name, Arc::new(endpoint));
        Ok(())
    }

    /// Every inbound endpoint, sorted by name.
    pub fn inbound_endpoints(&self) -> Vec<Arc<InboundEndpoint>> {
        self.inbound_lock().values().cloned().collect()
    }

    /// Inbound endpoint `name`.
    pub fn inbound_endpoint(&self, name: &str) -> Option<Arc<InboundEndpoint>> {
        self.inbound_lock().get(name).cloned()
    }

    /// Takes `socket`, accepted for session `id` of inbound endpoint `inbound` (its upgrade
    /// answered, `protocol` agreed), and returns the session's endpoint name. A new id makes
    /// a new session (counted against `max_sessions`); the id of a session within its resume
    /// window resumes it (what was sent to it meanwhile goes out first, in order); the id of
    /// a connected session replaces its client or is refused, per `on_duplicate`.
    pub async fn accept_session(
        &self,
        inbound: &str,
        id: &str,
        socket: AcceptedSocket,
        protocol: Option<String>,
    ) -> Result<EndpointName, SessionRefused> {
        let endpoint = self
            .inbound_endpoint(inbound)
            .ok_or_else(|| SessionRefused::UnknownInbound(inbound.to_owned()))?;
        let accepted = self.take_session(&endpoint, id, socket, protocol).await;
        if let Err(refused) = &accepted {
            endpoint.count_refusal(refused.reason());
        }
        accepted
    }

    async fn take_session(
        &self,
        endpoint: &Arc<InboundEndpoint>,
        id: &str,
        socket: AcceptedSocket,
        protocol: Option<String>,
    ) -> Result<EndpointName, SessionRefused> {
        if !endpoint.enabled() {
            return Err(SessionRefused::Disabled(endpoint.name.clone()));
        }
        let name = EndpointName::session(&endpoint.name, id).map_err(SessionRefused::InvalidId)?;
        let replace = endpoint.config.on_duplicate == OnDuplicate::Replace;
        let existing = {
            let mut endpoints = self.lock();
            match endpoints.by_name.get(&name) {
                Some(running) if running.supervisor.connected() => running.supervisor.clone(),
                _ => {
                    self.start_session(&mut endpoints, endpoint, &name, socket, protocol)?;
                    return Ok(name);
                }
            }
        };
        let attach = Attach {
            socket,
            protocol,
            replace,
        };
        match existing.send(attach).await {
            Ok(Ok(())) => Ok(name),
            Ok(Err(Unattached {
                why,
                socket,
                protocol,
            })) => match why {
                AttachRefused::Connected => Err(SessionRefused::Connected(name)),
                AttachRefused::Paused => Err(SessionRefused::Paused(name)),
                // The window passed as the client came back: a new session, once the old
                // one is gone (it forgets itself when its actor stops).
                _ => {
                    let mut endpoints = self.lock();
                    let gone = endpoints
                        .by_name
                        .get(&name)
                        .is_none_or(|running| !running.supervisor.connected());
                    if gone {
                        endpoints.by_name.remove(&name);
                        self.start_session(&mut endpoints, endpoint, &name, socket, protocol)?;
                        Ok(name)
                    } else {
                        Err(SessionRefused::Ending(name))
                    }
                }
            },
            Err(_) => Err(SessionRefused::Ending(name)),
        }
    }

    /// Starts session `name` of `inbound` with its first client, under the endpoints' lock.
    fn start_session(
        &self,
        endpoints: &mut Endpoints,
        inbound: &Arc<InboundEndpoint>,
        name: &EndpointName,
        socket: AcceptedSocket,
        protocol: Option<String>,
    ) -> Result<(), SessionRefused> {
        if endpoints.shut_down {
            return Err(SessionRefused::ShuttingDown);
        }
        let max = inbound.max_sessions();
        if inbound
            .sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < max).then_some(now + 1)
            })
            .is_err()
        {
            return Err(SessionRefused::TooMany {
                name: inbound.name.clone(),
                max,
            });
        }
        // Given back however the session ends, even if its actor never runs.
        let slot = SessionSlot(Arc::clone(inbound));
        let id = name.session_id().unwrap_or_default();
        // The status shows where the client connected: the path, never a query.
        let url = inbound.path().replacen("{id}", id, 1);
        let settings = inbound.settings.clone();
        let shared = Arc::new(EndpointShared::with_state(
            name.clone(),
            url,
            EndpointState::Connecting { attempt: 1 },
        ));
        shared.requests().configure(&settings.spec.request);
        let forget = {
            let herd = Arc::downgrade(&self.inner);
            let name = name.clone();
            let shared = Arc::clone(&shared);
            let inbound = Arc::clone(inbound);
            move || {
                drop(slot);
                if let Some(inner) = herd.upgrade() {
                    let herd = Herd { inner };
                    // Under the endpoints' lock, as the metrics read them: never counted twice.
                    let mut endpoints = herd.lock();
                    inbound
                        .retired
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .add(&shared.snapshot().stats);
                    if endpoints
                        .by_name
                        .get(&name)
                        .is_some_and(|running| Arc::ptr_eq(&running.shared, &shared))
                    {
                        endpoints.by_name.remove(&name);
                    }
                }
            }
        };
        let build = {
            let name = name.clone();
            let spec = Arc::clone(&settings.spec);
            let router = self.inner.router.clone();
            let shared = Arc::clone(&shared);
            move |_: &mut Context<Supervisor>| {
                Supervisor::new(name, spec, router)
                    .with_shared(shared)
                    .with_attached(socket, protocol)
                    .on_stopped(forget)
            }
        };
        let supervisor = match self.next_arbiter() {
            Some(arbiter) => Supervisor::start_in_arbiter(&arbiter, build),
            None => Supervisor::create(build),
        };
        endpoints.by_name.insert(
            name.clone(),
            Endpoint {
                settings,
                supervisor,
                shared,
                held: false,
                owner_paused: false,
            },
        );
        Ok(())
    }
}

/// One session counted against its inbound endpoint's `max_sessions`, until dropped.
struct SessionSlot(Arc<InboundEndpoint>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}
