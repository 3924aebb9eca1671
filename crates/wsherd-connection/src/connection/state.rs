//! Where one socket life stands: one enum instead of flags, published as the endpoint's phase.

use crate::event::Side;
use crate::stats::Phase;

/// The stages of one socket life, in the order they can happen.
///
/// | state | data written | control frames written | next |
/// | --- | --- | --- | --- |
/// | `Connecting` | no (`NotOpen`) | no | `Open`, or the actor stops |
/// | `Open` | yes | yes | `Closing` |
/// | `Closing` | no (`Closing`) | our Close, the echo | the actor stops |
/// | `Closed` | no | no | — |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketState {
    /// The handshake is in progress.
    Connecting,
    /// Frames flow both ways.
    Open,
    /// A Close was sent or received; the socket is winding down.
    Closing {
        /// Who sent the first Close.
        initiated_by: Side,
        /// The peer is gone: once our Close is flushed there is nothing to wait for.
        stop_when_flushed: bool,
    },
    /// The life is over (the actor has stopped).
    Closed,
}

impl SocketState {
    /// Whether caller messages may be written.
    pub(crate) fn accepts_messages(self) -> bool {
        self == SocketState::Open
    }

    /// Whether the socket exists and frames (at least control frames) may be queued on it.
    pub(crate) fn can_write(self) -> bool {
        matches!(self, SocketState::Open | SocketState::Closing { .. })
    }

    /// Who closed first, once a Close was sent or received.
    pub(crate) fn closing_side(self) -> Option<Side> {
        match self {
            SocketState::Closing { initiated_by, .. } => Some(initiated_by),
            _ => None,
        }
    }

    /// Whether a Close was sent or received (or the life is over).
    pub(crate) fn is_closing(self) -> bool {
        matches!(self, SocketState::Closing { .. } | SocketState::Closed)
    }

    /// Whether the actor stops as soon as everything queued is flushed.
    pub(crate) fn stops_when_flushed(self) -> bool {
        matches!(
            self,
            SocketState::Closing {
                stop_when_flushed: true,
                ..
            }
        )
    }

    /// The phase others read from the shared statistics.
    pub(crate) fn phase(self) -> Phase {
        match self {
            SocketState::Connecting => Phase::Connecting,
            SocketState::Open => Phase::Open,
            SocketState::Closing { .. } => Phase::Closing,
            SocketState::Closed => Phase::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_socket_takes_messages_but_a_closing_one_still_writes_its_close() {
        let closing = SocketState::Closing {
            initiated_by: Side::Peer,
            stop_when_flushed: false,
        };
        assert!(SocketState::Open.accepts_messages());
        assert!(!closing.accepts_messages());
        assert!(closing.can_write());
        assert!(!SocketState::Connecting.can_write());
        assert!(!SocketState::Closed.can_write());
        assert_eq!(closing.closing_side(), Some(Side::Peer));
        assert_eq!(SocketState::Open.closing_side(), None);
    }

    #[test]
    fn each_state_publishes_its_phase() {
        assert_eq!(SocketState::Connecting.phase(), Phase::Connecting);
        assert_eq!(SocketState::Open.phase(), Phase::Open);
        let abandoning = SocketState::Closing {
            initiated_by: Side::Local,
            stop_when_flushed: true,
        };
        assert_eq!(abandoning.phase(), Phase::Closing);
        assert!(abandoning.stops_when_flushed());
        assert_eq!(SocketState::Closed.phase(), Phase::Closed);
    }
}
