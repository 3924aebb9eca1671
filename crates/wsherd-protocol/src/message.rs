//! Typed inbound and outbound messages, and what goes wrong decoding them.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How many bytes of a rejected payload an error keeps, so a hostile peer's megabytes never
/// end up copied into logs or dead letters.
pub const EXCERPT_LIMIT: usize = 256;

/// A Rust type that arrives as JSON text messages of one kind, or of several.
///
/// Name one kind with `KIND`:
///
/// ```
/// use serde::Deserialize;
/// use wsherd_protocol::Inbound;
///
/// #[derive(Debug, Deserialize)]
/// struct Trade { seq: u64, price: f64 }
///
/// impl Inbound for Trade {
///     const KIND: &'static str = "trade";
/// }
/// assert_eq!(Trade::KINDS, ["trade"]);
/// ```
///
/// or several with `KINDS`, for a feed modelled as one `#[serde(tag = "type")]` enum (each
/// message is still decoded once):
///
/// ```
/// use serde::Deserialize;
/// use wsherd_protocol::Inbound;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(tag = "type", rename_all = "lowercase")]
/// enum FeedEvent {
///     Trade { seq: u64, price: f64 },
///     Quote { bid: f64, ask: f64 },
/// }
///
/// impl Inbound for FeedEvent {
///     const KINDS: &'static [&'static str] = &["trade", "quote"];
/// }
/// assert_eq!(FeedEvent::KIND, "trade");
/// ```
///
/// Each default is written in terms of the other: implement at least one of them (a type that
/// implements neither fails to compile where it is subscribed, with a "cycle detected" error).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message type wsherd can decode for a subscriber",
    label = "no `Inbound` impl: declare its kind with `wsherd::inbound!({Self} => \"kind\")`",
    note = "events (StateEvent, ConnectionEvent, QueueEvent, NetworkEvent, DeadLetter, Binary) are subscribed with `Herd::subscribe_events` or `Herd::on_event`"
)]
pub trait Inbound: DeserializeOwned + Send + Sync + 'static {
    /// The kind (the value of the endpoint's kind field) this type is decoded from; for a type
    /// of several kinds, the first of [`Inbound::KINDS`].
    const KIND: &'static str = Self::KINDS[0];

    /// Every kind this type is decoded from: `[KIND]` unless the type names several. A
    /// subscriber of the type receives messages of each of them.
    const KINDS: &'static [&'static str] = &[Self::KIND];
}

/// One message to write to a peer.
#[derive(Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

impl Outbound {
    /// Serializes `value` as JSON into a text message.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        serde_json::to_string(value)
            .map(Outbound::Text)
            .map_err(|source| EncodeError {
                type_name: std::any::type_name::<T>(),
                reason: source.to_string(),
            })
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Binary(bytes) => bytes.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outbound::Text(text) => f
                .debug_tuple("Text")
                .field(&excerpt(text.as_bytes()))
                .finish(),
            Outbound::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
        }
    }
}

impl From<String> for Outbound {
    fn from(text: String) -> Self {
        Outbound::Text(text)
    }
}

impl From<&str> for Outbound {
    fn from(text: &str) -> Self {
        Outbound::Text(text.to_owned())
    }
}

impl From<Bytes> for Outbound {
    fn from(bytes: Bytes) -> Self {
        Outbound::Binary(bytes)
    }
}

impl From<Vec<u8>> for Outbound {
    fn from(bytes: Vec<u8>) -> Self {
        Outbound::Binary(Bytes::from(bytes))
    }
}

/// A value could not be serialized into an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot serialize {type_name} as JSON: {reason}")]
pub struct EncodeError {
    /// The Rust type that failed.
    pub type_name: &'static str,
    /// serde_json's explanation.
    pub reason: String,
}

/// Which step of turning a frame into a typed value failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeStage {
    /// The text frame is not valid UTF-8.
    Utf8,
    /// The text is not JSON.
    Json,
    /// The JSON has no kind where the endpoint's kind rule looks.
    MissingKind,
    /// The JSON does not fit the subscribed Rust type.
    Typed {
        /// The kind the message carried.
        kind: String,
        /// The Rust type it was decoded into.
        type_name: &'static str,
    },
}

/// An inbound message was rejected; keeps why and a bounded copy of the payload.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The step that failed.
    pub stage: DecodeStage,
    /// The decoder's explanation, with line and column where it has them.
    pub reason: String,
    /// At most [`EXCERPT_LIMIT`] bytes of the payload, lossily turned into text.
    pub excerpt: String,
    /// The whole payload's length in bytes.
    pub payload_len: usize,
}

impl DecodeError {
    /// Builds an error for `payload`, keeping only an excerpt of it.
    pub fn new(stage: DecodeStage, reason: impl Into<String>, payload: &[u8]) -> Self {
        DecodeError {
            stage,
            reason: reason.into(),
            excerpt: excerpt(payload),
            payload_len: payload.len(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stage {
            DecodeStage::Utf8 => write!(f, "text frame is not valid UTF-8: {}", self.reason)?,
            DecodeStage::Json => write!(f, "message is not JSON: {}", self.reason)?,
            DecodeStage::MissingKind => write!(f, "message has no kind: {}", self.reason)?,
            DecodeStage::Typed { kind, type_name } => write!(
                f,
                "kind {kind:?} does not decode into {type_name}: {}",
                self.reason
            )?,
        }
        write!(
            f,
            " (payload {} bytes: {:?})",
            self.payload_len, self.excerpt
        )
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("stage", &self.stage)
            .field("reason", &self.reason)
            .field("excerpt", &self.excerpt)
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `text` (a message of `kind`) into `T`.
pub fn decode<T: DeserializeOwned>(kind: &str, text: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|error| {
        DecodeError::new(
            DecodeStage::Typed {
                kind: kind.to_owned(),
                type_name: std::any::type_name::<T>(),
            },
            error.to_string(),
            text.as_bytes(),
        )
    })
}

/// Checks that a text frame's payload is UTF-8 (RFC 6455 §8.1 makes anything else a failure).
pub fn validate_text(payload: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(payload)
        .map_err(|error| DecodeError::new(DecodeStage::Utf8, error.to_string(), payload))
}

/// At most [`EXCERPT_LIMIT`] bytes of `payload` as text, cut on a character boundary, with `…`
/// when something was cut.
pub fn excerpt(payload: &[u8]) -> String {
    if payload.len() <= EXCERPT_LIMIT {
        return String::from_utf8_lossy(payload).into_owned();
    }
    let mut cut = EXCERPT_LIMIT;
    // A UTF-8 character is at most 4 bytes: back off over continuation bytes only.
    while cut > EXCERPT_LIMIT - 4 && payload.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    let mut text = String::from_utf8_lossy(&payload[..cut]).into_owned();
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Trade {
        seq: u64,
    }

    #[test]
    fn decode_ok_and_typed_error_names_kind_and_type() {
        assert_eq!(
            decode::<Trade>("trade", r#"{"type":"trade","seq":3}"#),
            Ok(Trade { seq: 3 })
        );
        let error = decode::<Trade>("trade", r#"{"type":"trade","seq":"x"}"#).unwrap_err();
        assert!(
            matches!(&error.stage, DecodeStage::Typed { kind, type_name }
            if kind == "trade" && type_name.ends_with("Trade"))
        );
        let shown = error.to_string();
        assert!(shown.contains("kind \"trade\""), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");
    }

    #[test]
    fn excerpt_is_bounded_and_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= EXCERPT_LIMIT + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert!(!cut.contains('\u{FFFD}'));
        assert_eq!(excerpt(b"short"), "short");
        let error = DecodeError::new(DecodeStage::Json, "bad", long.as_bytes());
        assert_eq!(error.payload_len, 2000);
    }

    #[test]
    fn utf8_validation() {
        assert_eq!(validate_text(b"ok").unwrap(), "ok");
        let error = validate_text(&[b'a', 0xff, 0xfe]).unwrap_err();
        assert_eq!(error.stage, DecodeStage::Utf8);
        assert!(error.to_string().contains("UTF-8"));
    }

    #[test]
    fn outbound_json_and_debug_hides_long_payloads() {
        let out = Outbound::json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(out, Outbound::Text(r#"{"a":1}"#.to_owned()));
        assert_eq!(out.len(), 7);
        let big = Outbound::Text("x".repeat(10_000));
        assert!(format!("{big:?}").len() < 400);
        assert_eq!(
            format!("{:?}", Outbound::from(vec![1u8, 2])),
            "Binary(2 bytes)"
        );
    }
}
