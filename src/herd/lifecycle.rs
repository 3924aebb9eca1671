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
}

/// What a stopped endpoint leaves: its unsent messages, and what a successor replays.
pub(super) struct Stopped {
    pub(super) unsent: Vec<Outbound>,
    pub(super) replay: Replay,
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
        let current: Vec<EndpointName> = self.endpoints();
        for name in current {
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
                Some(true) => report.unchanged.push(name),
                Some(false) => {
                    let stopped = self
                        .stop_endpoint(name.as_str(), CloseCode::RESTART, "configuration changed")
                        .await?;
                    if !stopped.unsent.is_empty() {
                        report.unsent.insert(name.clone(), stopped.unsent);
                    }
                    self.start_endpoint(name.clone(), endpoint.into(), stopped.replay)?;
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
        let stopped = self
            .stop_endpoint(name.as_str(), CloseCode::RESTART, "restart requested")
            .await?;
        self.start_endpoint(name, settings, stopped.replay)?;
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
        let endpoint = self
            .lock()
            .by_name
            .remove(name)
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        let stop = Stop {
            code,
            reason: reason.to_owned(),
        };
        let Ok(receipt) = endpoint.supervisor.send(stop).await else {
            // The supervisor was already gone: it held nothing any more.
            return Ok(Stopped {
                unsent: Vec::new(),
                replay: Replay::default(),
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

    fn control(&self, name: &str, control: Control) -> Result<(), HerdError> {
        let mut endpoints = self.lock();
        let endpoint = endpoints
            .by_name
            .get_mut(name)
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        // The owner decided for this endpoint: starting the herd no longer resumes it.
        endpoint.held = false;
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

    /// Closes every endpoint gracefully (Close 1000 with `reason`) and forgets them; waits up
    /// to `timeout` for the peers to answer. Returns what was still queued and which closes
    /// did not finish in time.
    pub async fn shutdown(&self, reason: &str, timeout: Duration) -> ShutdownReport {
        let endpoints = std::mem::take(&mut self.lock().by_name);
        let mut report = ShutdownReport::default();
        let mut pending = Vec::new();
        for (name, endpoint) in endpoints {
            let stop = Stop {
                code: CloseCode::NORMAL,
                reason: reason.to_owned(),
            };
            if let Ok(receipt) = endpoint.supervisor.send(stop).await {
                if !receipt.unsent.is_empty() {
                    report.unsent.insert(name.clone(), receipt.unsent);
                }
                pending.push((name, receipt.closed, None));
            }
        }
        // `timeout` measures the whole shutdown, not each close (tokio caps huge timeouts).
        let all = async {
            for (_, closed, late) in pending.iter_mut() {
                *late = closed.await.ok();
            }
        };
        let in_time = tokio::time::timeout(timeout, all).await.is_ok();
        for (name, mut closed, late) in pending {
            let late = match late {
                Some(late) => Some(late),
                None if in_time => None,
                None => match closed.try_recv() {
                    Ok(late) => Some(late),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                        report.timed_out.push(name.clone());
                        None
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => None,
                },
            };
            if let Some(late) = late.filter(|late| !late.is_empty()) {
                report.unsent.entry(name).or_default().splice(0..0, late);
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
