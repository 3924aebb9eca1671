//! WebSocket close codes (RFC 6455 §7.4) as one type, so a code is never a bare number.

use std::fmt;

/// A close code: what a Close frame says about why the socket ends.
///
/// The named constants are the codes wsherd sends or acts on; any other code a peer sends is
/// kept as it came ([`CloseCode::from`] a `u16`).
///
/// ```
/// use wsherd_protocol::CloseCode;
///
/// assert_eq!(CloseCode::from(1001), CloseCode::GOING_AWAY);
/// assert_eq!(CloseCode::TOO_BIG.to_string(), "1009");
/// assert!(!CloseCode::NO_STATUS.may_be_sent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, client navigating away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: the Close frame carried no code. Reported only; never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the socket ended without a Close frame. Reported only; never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data did not match its type (e.g. text that is not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message broke the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a frame or message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the endpoint met a condition that keeps it from going on (wsherd: a dead peer).
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN: CloseCode = CloseCode(1013);

    /// The number on the wire.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a Close frame we send (1005 and 1006 only describe ends).
    pub const fn may_be_sent(self) -> bool {
        !matches!(self.0, 1005 | 1006 | 1015)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_number() {
        for code in [1000u16, 1006, 1011, 3000, 4999] {
            assert_eq!(u16::from(CloseCode::from(code)), code);
        }
        assert_eq!(CloseCode::INTERNAL, 1011);
    }

    #[test]
    fn codes_that_describe_an_end_are_never_sent() {
        assert!(!CloseCode::NO_STATUS.may_be_sent());
        assert!(!CloseCode::ABNORMAL.may_be_sent());
        assert!(CloseCode::NORMAL.may_be_sent());
        assert!(CloseCode::from(4000).may_be_sent());
    }
}
