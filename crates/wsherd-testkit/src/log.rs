//! What the server saw, for tests to assert on.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// A message the server received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Received {
    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Received::Text(text) => Some(text),
            Received::Binary(_) => None,
        }
    }
}

/// Everything one server-side connection saw.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLog {
    /// Index of the connection on this server, from 0.
    pub index: usize,
    /// The HTTP status the upgrade was answered with (101, or the rejection).
    pub status: u16,
    /// The request's headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Messages received, in order.
    pub received: Vec<Received>,
    /// Payloads of Pongs received.
    pub pongs: Vec<Bytes>,
    /// Pings received from the client.
    pub pings: usize,
    /// The client's Close frame: code and reason.
    pub close: Option<(u16, String)>,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl ConnectionLog {
    /// The first value of a request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Received text messages.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.received.iter().filter_map(Received::as_text)
    }
}

/// The log of a whole server; shared with its connection actors.
#[derive(Debug, Default)]
pub(crate) struct ServerLog {
    connections: Mutex<Vec<ConnectionLog>>,
    changed: Notify,
}

/// A wait on the server log ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How long it waited.
    pub waited: Duration,
    /// A summary of the log when it gave up.
    pub summary: String,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "condition not met after {:?}; server saw: {}", self.waited, self.summary)
    }
}

impl std::error::Error for WaitTimeout {}

impl ServerLog {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<ConnectionLog>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn open(&self, status: u16, headers: Vec<(String, String)>) -> usize {
        let index = {
            let mut connections = self.lock();
            let index = connections.len();
            connections.push(ConnectionLog {
                index,
                status,
                headers,
                ended: status != 101,
                ..ConnectionLog::default()
            });
            index
        };
        self.changed.notify_waiters();
        index
    }

    pub(crate) fn update(&self, index: usize, change: impl FnOnce(&mut ConnectionLog)) {
        if let Some(connection) = self.lock().get_mut(index) {
            change(connection);
        }
        self.changed.notify_waiters();
    }

    pub(crate) async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[ConnectionLog]) -> Option<R>,
    ) -> Result<R, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            if let Some(result) = check(&self.lock()) {
                return Ok(result);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    waited: timeout,
                    summary: summarize(&self.lock()),
                });
            }
        }
    }
}

fn summarize(connections: &[ConnectionLog]) -> String {
    let parts: Vec<String> = connections
        .iter()
        .map(|c| {
            format!(
                "#{} status {} received {} pongs {} close {:?} ended {}",
                c.index,
                c.status,
                c.received.len(),
                c.pongs.len(),
                c.close,
                c.ended
            )
        })
        .collect();
    if parts.is_empty() {
        "no connections".to_owned()
    } else {
        parts.join("; ")
    }
}
