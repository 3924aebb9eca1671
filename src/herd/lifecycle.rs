//! Endpoints coming and going: add, remove, restart, reload, the owner's controls (pause,
//! resume, reconnect), and shutdown, with the reports the bulk operations return.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use wsherd_protocol::{CloseCode, EndpointName, Outbound};
use wsherd_supervisor::{Control, EndpointSpec, OnOpenHook, Stop};

use super::Herd;
use crate::config::{EndpointConfig, HerdConfig};
use crate::error::HerdError;

/// What a [`Herd::reload`] did, by endpoint name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// New endpoints, started.
    pub started: Vec<EndpointName>,
    /// Changed endpoints, restarted with their new settings.
    pub restarted: Vec<EndpointName>,
    /// Removed (or disabled) endpoints, stopped.
    pub stopped: Vec<EndpointName>,
    /// Endpoints whose settings did not change: their sockets were not touched.
    pub unchanged: Vec<EndpointName>,
    /// Messages the stopped and restarted endpoints had accepted but not sent, oldest first:
    /// the queue, and what their sockets handed back as they closed.
    pub unsent: BTreeMap<EndpointName, Vec<Outbound>>,
    /// Inbound endpoints added, removed or changed in the new configuration and left as they
    /// run: an inbound endpoint's path is routed when the server starts, so its changes take
    /// effect at the next start.
    pub inbound_not_applied: Vec<EndpointName>,
}

/// What a stopped endpoint leaves: its unsent messages, and what a successor replays.
pub(super) struct Stopped {
    pub(super) unsent: Vec<Outbound>,
    pub(super) replay: Replay,
    /// What the owner decided for it before the herd was started: `Some(true)` paused,
    /// `Some(false)` let it run; `None`, nothing (or the herd was started).
    pub(super) decided: Option<bool>,
}

/// Run-time subscriptions a restarted endpoint keeps: [`Herd::remember`]ed messages and hooks.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) remembered: Vec<Outbound>,
    pub(super) hooks: Vec<OnOpenHook>,
}

/// How long [`Herd::run_until_signal`] lets the closes take before it gives up on them.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Herd::shutdown`] leaves behind. Its `Display` says how many messages each endpoint
/// left unsent, never what they said (subscriptions and logins often carry credentials).
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Messages accepted and not sent, by endpoint, oldest first: the queue, and what the
    /// sockets handed back as they closed (for the closes that finished in time).
    pub unsent: BTreeMap<EndpointName, Vec<Outbound>>,
    /// Endpoints whose close did not finish within the timeout.
    pub timed_out: Vec<EndpointName>,
    /// Endpoints that closed in time, but whose last events (`Closed`, `Stopped`) were still
    /// waiting for a subscriber with a full mailbox when the timeout passed: they follow when
    /// it takes them, or are given up after the endpoint's `max_stall`.
    pub events_pending: Vec<EndpointName>,
}

impl ShutdownReport {
    /// How many messages were left unsent, over all endpoints.
    pub fn unsent_count(&self) -> usize {
        self.unsent.values().map(Vec::len).sum()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unsent_count() {
            0 => write!(f, "nothing left unsent")?,
            count => {
                write!(f, "{count} message{} left unsent (", plural(count))?;
                for (i, (name, unsent)) in self.unsent.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{name}: {}", unsent.len())?;
                }
                write!(f, ")")?;
            }
        }
        if !self.timed_out.is_empty() {
            let names: Vec<&str> = self.timed_out.iter().map(EndpointName::as_str).collect();
            write!(f, "; close timed out for {}", names.join(", "))?;
        }
        if !self.events_pending.is_empty() {
            let names: Vec<&str> = self
                .events_pending
                .iter()
                .map(EndpointName::as_str)
                .collect();
            write!(
                f,
                "; last events still waiting for a full subscriber: {}",
                names.join(", ")
            )?;
        }
        Ok(())
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

impl Herd {
    /// Applies a new configuration: unchanged endpoints keep their sockets, changed ones
    /// restart, removed or disabled ones stop, new ones start. Herd settings (workers,
    /// governor) stay as they were started.
    pub async fn reload(&self, config: HerdConfig) -> Result<ReloadReport, HerdError> {
        let mut report = ReloadReport::default();
        // Refuse a bad configuration before anything is stopped: an error after a stop would
        // lose what the stopped endpoints handed back.
        for (name, endpoint) in config.endpoints.iter().filter(|(_, e)| e.enabled) {
            if let Err(error) = endpoint.spec.validate() {
                return Err(HerdError::InvalidSpec {
                    name: name.clone(),
                    error,
                });
            }
        }
        report.inbound_not_applied = self.inbound_changes(&config.inbound);
        let current: Vec<EndpointName> = self.endpoints();
        // Sessions belong to their inbound endpoints, which a reload leaves as they are.
        for name in current
            .into_iter()
            .filter(|name| name.session_id().is_none())
        {
            let keep = config.endpoints.get(&name).is_some_and(|e| e.enabled);
            if !keep {
                let stopped = self
                    .stop_endpoint(
                        name.as_str(),
                        CloseCode::NORMAL,
                        "removed from the configuration",
                    )
                    .await?;
                if !stopped.unsent.is_empty() {
                    report.unsent.insert(name.clone(), stopped.unsent);
                }
                report.stopped.push(name);
            }
        }
        for (name, endpoint) in config.endpoints {
            if !endpoint.enabled {
                continue;
            }
            let existing = self
                .lock()
                .by_name
                .get(&name)
                .map(|e| e.settings.same_as(&endpoint));
            match existing {
                Some(true) => {
                    // Unchanged as a connection; whether it is required may still change.
                    if let Some(running) = self.lock().by_name.get_mut(&name) {
                        running.settings.required = endpoint.required;
                    }
                    report.unchanged.push(name);
                }
                Some(false) => {
                    let stopped = self
                        .stop_endpoint(name.as_str(), CloseCode::RESTART, "configuration changed")
                        .await?;
                    if !stopped.unsent.is_empty() {
                        report.unsent.insert(name.clone(), stopped.unsent);
                    }
                    self.start_endpoint(name.clone(), endpoint.into(), stopped.replay)?;
                    self.keep_decision(name.as_str(), stopped.decided)?;
                    report.restarted.push(name);
                }
                None => {
                    self.start_endpoint(name.clone(), endpoint.into(), Replay::default())?;
                    report.started.push(name);
                }
            }
        }
        Ok(report)
    }

    /// The inbound endpoints `wanted` adds, removes or changes.
    fn inbound_changes(
        &self,
        wanted: &BTreeMap<EndpointName, crate::config::InboundConfig>,
    ) -> Vec<EndpointName> {
        let running = self.inbound_lock();
        let mut changed: Vec<EndpointName> = wanted
            .iter()
            .filter(|(name, config)| {
                running
                    .get(*name)
                    .is_none_or(|inbound| !inbound.config().same_as(config))
            })
            .map(|(name, _)| name.clone())
            .collect();
        changed.extend(
            running
                .keys()
                .filter(|name| !wanted.contains_key(*name))
                .cloned(),
        );
        changed.sort();
        changed
    }

    /// Stops endpoint `name` and starts it afresh with the same settings (new backoff, new
    /// counters, empty queue; remembered messages and hooks kept). Returns what it had accepted
    /// and not sent, oldest first.
    pub async fn restart(&self, name: &str) -> Result<Vec<Outbound>, HerdError> {
        let settings = self
            .lock()
            .by_name
            .get(name)
            .map(|e| e.settings.clone())
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        let name = EndpointName::new(name)?;
        if name.session_id().is_some() {
            // A session is its client's: it cannot be started again from here (use
            // `reconnect`, which closes the client's socket, or `remove_endpoint`).
            return Err(HerdError::InvalidName(
                wsherd_protocol::InvalidEndpointName {
                    name: name.to_string(),
                    why: "an inbound session cannot be restarted; reconnect or remove it",
                },
            ));
        }
        let stopped = self
            .stop_endpoint(name.as_str(), CloseCode::RESTART, "restart requested")
            .await?;
        self.start_endpoint(name.clone(), settings, stopped.replay)?;
        self.keep_decision(name.as_str(), stopped.decided)?;
        Ok(stopped.unsent)
    }

    /// Starts endpoint `name` under supervision; it connects at once (through the governor),
    /// or, in a herd not started yet, when [`Herd::start`] is called.
    pub fn add_endpoint(
        &self,
        name: &str,
        spec: impl Into<EndpointSpec>,
    ) -> Result<EndpointName, HerdError> {
        let name = EndpointName::new(name)?;
        self.start_endpoint(
            name.clone(),
            EndpointConfig::new(spec.into()).into(),
            Replay::default(),
        )?;
        Ok(name)
    }

    /// Starts endpoint `name` as `endpoint` configures it (whether it is required included),
    /// as [`Herd::from_config`] starts the endpoints of a file: what a cluster member does
    /// when it takes an endpoint.
    pub fn add_configured(
        &self,
        name: EndpointName,
        endpoint: crate::config::EndpointConfig,
    ) -> Result<(), HerdError> {
        self.start_endpoint(name, endpoint.into(), Replay::default())
    }

    /// Closes endpoint `name` gracefully (Close with `code` and `reason`), waits for the close
    /// to finish (the peer's answer or the close timeout), forgets it, and hands back every
    /// message it had accepted and not sent, oldest first: the queue, and what the socket
    /// handed back as it closed.
    pub async fn remove_endpoint(
        &self,
        name: &str,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Result<Vec<Outbound>, HerdError> {
        Ok(self.stop_endpoint(name, code.into(), reason).await?.unsent)
    }

    async fn stop_endpoint(
        &self,
        name: &str,
        code: CloseCode,
        reason: &str,
    ) -> Result<Stopped, HerdError> {
        let (endpoint, started) = {
            let mut endpoints = self.lock();
            let endpoint = endpoints
                .by_name
                .remove(name)
                .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
            (endpoint, endpoints.started)
        };
        let decided = match (started, endpoint.owner_paused, endpoint.held) {
            (true, _, _) | (false, false, true) => None,
            (false, paused, _) => Some(paused),
        };
        let stop = Stop {
            code,
            reason: reason.to_owned(),
        };
        let Ok(receipt) = endpoint.supervisor.send(stop).await else {
            // The supervisor was already gone: it held nothing any more.
            return Ok(Stopped {
                unsent: Vec::new(),
                replay: Replay::default(),
                decided,
            });
        };
        let mut unsent = receipt.unsent;
        // The socket's messages left the queue before those still in it: they go first.
        let late = receipt.closed.await.unwrap_or_default();
        unsent.splice(0..0, late);
        Ok(Stopped {
            unsent,
            replay: Replay {
                remembered: receipt.remembered,
                hooks: receipt.hooks,
            },
            decided,
        })
    }

    /// Closes the socket of endpoint `name` and connects again at once; from `Failed` this
    /// starts over.
    pub fn reconnect(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Reconnect)
    }

    /// Closes the socket of endpoint `name` and keeps it down until [`Herd::resume`]; sends
    /// queue meanwhile.
    pub fn pause(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Pause)
    }

    /// Connects a paused endpoint again.
    pub fn resume(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Resume)
    }

    /// A restarted endpoint of a herd not started yet keeps what the owner decided for its
    /// predecessor: paused stays paused, and one let run is not held again.
    fn keep_decision(&self, name: &str, decided: Option<bool>) -> Result<(), HerdError> {
        match decided {
            Some(true) => self.control(name, Control::Pause),
            Some(false) => self.control(name, Control::Resume),
            None => Ok(()),
        }
    }

    fn control(&self, name: &str, control: Control) -> Result<(), HerdError> {
        let mut endpoints = self.lock();
        let endpoint = endpoints
            .by_name
            .get_mut(name)
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        // The owner decided for this endpoint: starting the herd no longer resumes it.
        endpoint.held = false;
        match control {
            Control::Pause => endpoint.owner_paused = true,
            Control::Resume | Control::Reconnect => endpoint.owner_paused = false,
            // Later controls say for themselves.
            _ => {}
        }
        // Control messages come from the owner, a handful at a time.
        endpoint.supervisor.do_send(control);
        Ok(())
    }

    /// Starts the herd (if it was held), runs until the process gets SIGINT (Ctrl-C) or
    /// SIGTERM, then shuts down as [`Herd::shutdown`] with [`SHUTDOWN_TIMEOUT`] and returns the
    /// report: the usual end of an application's `main`. If the signals cannot be listened to
    /// (an error is logged), it runs until the process is killed.
    pub async fn run_until_signal(&self) -> ShutdownReport {
        self.run_until(shutdown_signal(), SHUTDOWN_TIMEOUT).await
    }

    /// Starts the herd (if it was held), runs until `stop` completes, then shuts down as
    /// [`Herd::shutdown`] waiting up to `timeout`, and returns the report.
    pub async fn run_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
        timeout: Duration,
    ) -> ShutdownReport {
        self.start();
        stop.await;
        self.shutdown("shutting down", timeout).await
    }

    /// Closes every endpoint gracefully (Close 1000 with `reason`) and forgets them. Waits up
    /// to `timeout` in all for the peers to answer and for each endpoint's last events to be
    /// delivered: once it returns, every event subscriber (one subscribed with
    /// [`Herd::subscribe_events`], say) has handled each endpoint's `ConnectionEvent::Closed`
    /// and its `StateEvent` `Stopped` (an `Overflow::Drop` subscriber has them in its mailbox),
    /// unless the report lists the endpoint as timed out or with events pending: a subscriber
    /// whose mailbox stays full never holds shutdown up past `timeout`. Returns what was still
    /// queued, and what the sockets handed back as they closed. From the call on, inbound
    /// endpoints take no new sessions ([`SessionRefused::ShuttingDown`]).
    ///
    /// [`SessionRefused::ShuttingDown`]: crate::SessionRefused::ShuttingDown
    ///
    /// A subscriber that awaits this while its own mailbox is paused (inside `ctx.wait`) cannot
    /// handle those events before it returns, so shutdown then takes the whole `timeout`; await
    /// it from `ctx.spawn`, or from outside the subscriber.
    pub async fn shutdown(&self, reason: &str, timeout: Duration) -> ShutdownReport {
        let endpoints = {
            let mut endpoints = self.lock();
            // A client that connects from now on would make a session nobody stops.
            endpoints.shut_down = true;
            std::mem::take(&mut endpoints.by_name)
        };
        let mut report = ShutdownReport::default();
        let stop = || Stop {
            code: CloseCode::NORMAL,
            reason: reason.to_owned(),
        };
        // Every stop is asked for before any answer is awaited: the endpoints close together.
        let mut closing: Vec<Closing> = endpoints
            .into_iter()
            .map(|(name, endpoint)| Closing {
                request: Some(Box::pin(endpoint.supervisor.send(stop()))),
                supervisor: endpoint.supervisor,
                name,
                closed: None,
                settled: None,
                late: None,
                delivered: false,
            })
            .collect();
        // `timeout` measures the whole shutdown, not each step (tokio caps huge timeouts).
        let all = async {
            for endpoint in closing.iter_mut() {
                let Some(request) = endpoint.request.as_mut() else {
                    continue;
                };
                let answer = request.await;
                endpoint.request = None;
                // Without an answer the supervisor was already gone: it holds nothing.
                if let Ok(receipt) = answer {
                    if !receipt.unsent.is_empty() {
                        report.unsent.insert(endpoint.name.clone(), receipt.unsent);
                    }
                    endpoint.closed = Some(receipt.closed);
                    endpoint.settled = Some(receipt.settled);
                }
            }
            for endpoint in closing.iter_mut() {
                if let Some(closed) = endpoint.closed.as_mut() {
                    endpoint.late = Some(closed.await.unwrap_or_default());
                }
            }
            for endpoint in closing.iter_mut() {
                if let Some(settled) = endpoint.settled.as_mut() {
                    // `Err`: gone without a word, so nothing is left to deliver either.
                    let _ = settled.await;
                    endpoint.delivered = true;
                }
            }
        };
        let in_time = tokio::time::timeout(timeout, all).await.is_ok();
        for mut endpoint in closing {
            if let Some(mut request) = endpoint.request.take() {
                // Answered while an earlier one was awaited, or not at all: look once, without
                // waiting, so no receipt (and none of the messages it hands back) is dropped.
                let mut look = std::task::Context::from_waker(std::task::Waker::noop());
                match std::future::Future::poll(request.as_mut(), &mut look) {
                    std::task::Poll::Ready(Ok(receipt)) => {
                        if !receipt.unsent.is_empty() {
                            report.unsent.insert(endpoint.name.clone(), receipt.unsent);
                        }
                        endpoint.closed = Some(receipt.closed);
                        endpoint.settled = Some(receipt.settled);
                    }
                    // Gone: it held nothing any more.
                    std::task::Poll::Ready(Err(_)) => continue,
                    std::task::Poll::Pending => {
                        // Never answered (its mailbox was full): make sure the stop is on its
                        // way.
                        endpoint.supervisor.do_send(stop());
                        report.timed_out.push(endpoint.name);
                        continue;
                    }
                }
            }
            let late = match (endpoint.late.take(), endpoint.closed.as_mut()) {
                (Some(late), _) => Some(late),
                (None, None) => None,
                (None, Some(_)) if in_time => None,
                (None, Some(closed)) => match closed.try_recv() {
                    Ok(late) => Some(late),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                        report.timed_out.push(endpoint.name.clone());
                        None
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => None,
                },
            };
            let closed_in_time = report.timed_out.last() != Some(&endpoint.name);
            if closed_in_time
                && !endpoint.delivered
                && let Some(settled) = endpoint.settled.as_mut()
                && settled.try_recv() == Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            {
                report.events_pending.push(endpoint.name.clone());
            }
            if let Some(late) = late.filter(|late| !late.is_empty()) {
                report
                    .unsent
                    .entry(endpoint.name)
                    .or_default()
                    .splice(0..0, late);
            }
        }
        report
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM (Ctrl-C only, off Unix): what
/// [`Herd::run_until_signal`] waits for, to combine with an application's own stop
/// conditions in [`Herd::run_until`]. If the signals cannot be listened to, an error is logged
/// and it never completes.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGINT/SIGTERM; running until killed");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C; running until killed");
            std::future::pending::<()>().await;
        }
    }
}

/// One endpoint on its way out of a [`Herd::shutdown`].
struct Closing {
    name: EndpointName,
    supervisor: actix::Addr<wsherd_supervisor::Supervisor>,
    /// The stop, until the supervisor answers it.
    request: Option<std::pin::Pin<Box<actix::dev::Request<wsherd_supervisor::Supervisor, Stop>>>>,
    /// Resolves when the socket is closed.
    closed: Option<tokio::sync::oneshot::Receiver<Vec<Outbound>>>,
    /// Resolves when the last events are delivered.
    settled: Option<tokio::sync::oneshot::Receiver<()>>,
    /// What the socket handed back as it closed.
    late: Option<Vec<Outbound>>,
    /// The last events are delivered.
    delivered: bool,
}
