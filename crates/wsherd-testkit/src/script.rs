//! What a test server does on each connection.

use std::time::Duration;

use bytes::Bytes;

/// One step of a connection's script, run in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send a text frame.
    Text(String),
    /// Send a binary frame.
    Binary(Bytes),
    /// Send `count` sequence-numbered JSON messages, kinds taken in turn from `kinds`:
    /// `{"<kind_field>":"<kind>","seq":<n>,"data":"<padding>"}`, `seq` counting from `first_seq`.
    Stream {
        /// The field the kind is written to (`"type"` for the default kind rule).
        kind_field: String,
        /// Kinds, used round-robin by sequence number.
        kinds: Vec<String>,
        /// The first sequence number.
        first_seq: u64,
        /// How many messages.
        count: u64,
        /// Bytes of padding in `data`, to make messages a realistic size.
        padding: usize,
    },
    /// Send `text` as a fragmented text message of frames of at most `fragment_size` bytes
    /// (split on character boundaries).
    Fragmented {
        /// The whole message.
        text: String,
        /// The largest fragment.
        fragment_size: usize,
    },
    /// Send a protocol Ping with this payload (the client's Pong is recorded).
    Ping(Bytes),
    /// Stop answering the client's Pings (true) or answer them again (false).
    IgnorePings(bool),
    /// Echo every text and binary message the client sends.
    Echo(bool),
    /// From now on, answer every text message equal to `request` with `reply` (an
    /// application-level heartbeat or a subscription acknowledgement).
    Answer {
        /// The text to answer.
        request: String,
        /// The answer.
        reply: String,
    },
    /// From now on, answer every JSON text message that has the top-level `field` with
    /// `reply`, each `{id}` in it replaced by that field's JSON: `{"id":{id},"ok":true}`
    /// answers a request by id; `{"id":"{id}"}` answers with the id of the wrong type.
    ReplyById {
        /// The field the id is in.
        field: String,
        /// The answer's template.
        reply: String,
    },
    /// Wait until this connection has received this many text or binary messages in total.
    WaitForMessages(usize),
    /// Wait this long before the next step.
    Pause(Duration),
    /// Send a Close frame with this code and reason, then end the connection.
    Close {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: String,
    },
    /// End the TCP connection without a Close frame, once the client has read everything
    /// written before (the server pings and cuts on the Pong).
    Drop,
    /// End the TCP connection at once, without a Close frame and without waiting for
    /// anything: what is on the wire either way (and unread in the server's buffers) is lost,
    /// as when a peer crashes.
    Cut,
}

impl Step {
    /// A text step.
    pub fn text(text: impl Into<String>) -> Self {
        Step::Text(text.into())
    }

    /// `count` messages of `kinds` in the `type` field, starting at `seq` 0, small padding.
    pub fn stream(kinds: &[&str], count: u64) -> Self {
        Step::Stream {
            kind_field: "type".to_owned(),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            first_seq: 0,
            count,
            padding: 16,
        }
    }

    /// A close step.
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Step::Close {
            code,
            reason: reason.into(),
        }
    }
}

/// A whole connection script: the steps, run in order, then the connection stays open (echoing
/// if asked to) until the client closes or the server stops.
pub type Script = Vec<Step>;

/// What the server does with one upgrade request.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Accept the WebSocket and run the script.
    Accept(Script),
    /// Refuse the upgrade with this HTTP status.
    Reject(u16),
}

impl From<Script> for Behaviour {
    fn from(script: Script) -> Self {
        Behaviour::Accept(script)
    }
}

/// Builds the JSON of one streamed message.
pub fn stream_message(kind_field: &str, kind: &str, seq: u64, padding: usize) -> String {
    let field = serde_json::to_string(kind_field).unwrap_or_else(|_| "\"type\"".to_owned());
    let kind = serde_json::to_string(kind).unwrap_or_else(|_| "\"\"".to_owned());
    let mut text = String::with_capacity(40 + field.len() + kind.len() + padding);
    text.push('{');
    text.push_str(&field);
    text.push(':');
    text.push_str(&kind);
    text.push_str(",\"seq\":");
    text.push_str(&seq.to_string());
    text.push_str(",\"data\":\"");
    text.extend(std::iter::repeat_n('x', padding));
    text.push_str("\"}");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_message_is_json() {
        let text = stream_message("e", "tr\"ade", 42, 3);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["e"], "tr\"ade");
        assert_eq!(value["seq"], 42);
        assert_eq!(value["data"], "xxx");
    }
}
