//! What the server saw, for tests to assert on.

use bytes::Bytes;

use crate::watch::Watched;

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
    /// The request path with its query, such as `/feed?x=1`.
    pub path: Option<String>,
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
pub(crate) type ServerLog = Watched<Vec<ConnectionLog>>;

impl ServerLog {
    pub(crate) fn open(&self, status: u16, path: String, headers: Vec<(String, String)>) -> usize {
        self.update(|connections| {
            let index = connections.len();
            connections.push(ConnectionLog {
                index,
                status,
                path: Some(path),
                headers,
                ended: status != 101,
                ..ConnectionLog::default()
            });
            index
        })
    }

    pub(crate) fn record(&self, index: usize, change: impl FnOnce(&mut ConnectionLog)) {
        self.update(|connections| {
            if let Some(connection) = connections.get_mut(index) {
                change(connection);
            }
        });
    }
}

pub(crate) fn summarize(connections: &[ConnectionLog]) -> String {
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
