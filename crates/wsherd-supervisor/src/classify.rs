//! What to do when a socket life ends: reconnect now, back off, or stop.

use std::collections::BTreeMap;

use wsherd_connection::{EndReason, TlsClass};
use wsherd_protocol::CloseCode;

/// The supervisor's answer to one end of a socket life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reconnect at once (the server is restarting or going away on purpose). Honoured for a
    /// socket that was live, once until a socket stays live for `reset_after`; otherwise the
    /// end is paced like [`Action::Backoff`] (see [`ReconnectPolicy`](crate::ReconnectPolicy)),
    /// so a server that closes with 1012 in a loop cannot make the endpoint spin.
    ReconnectNow,
    /// Reconnect after the backoff delay.
    Backoff,
    /// Do not reconnect: the endpoint is `Failed`.
    Stop,
}

/// Maps close codes, handshake statuses and kinds of TLS failure to actions; per-endpoint
/// overrides on top of defaults that follow what the codes mean.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionTable {
    /// Overrides by close code.
    pub on_close: BTreeMap<CloseCode, Action>,
    /// Overrides by HTTP status of a refused handshake.
    pub on_status: BTreeMap<u16, Action>,
    /// Overrides by kind of TLS failure (see [`default_for_tls`]).
    pub on_tls: BTreeMap<TlsClass, Action>,
}

impl ActionTable {
    /// The action for `reason`.
    pub fn classify(&self, reason: &EndReason) -> Action {
        classify(Some(self), reason)
    }

    /// No overrides at all: every end gets its default action.
    pub fn is_empty(&self) -> bool {
        self.on_close.is_empty() && self.on_status.is_empty() && self.on_tls.is_empty()
    }
}

/// The action for `reason` under `table`'s overrides (`None`: none, the defaults alone).
pub(crate) fn classify(table: Option<&ActionTable>, reason: &EndReason) -> Action {
    if let Some(status) = reason.handshake_status() {
        return table
            .and_then(|t| t.on_status.get(&status).copied())
            .unwrap_or_else(|| default_for_status(status));
    }
    if let Some(class) = reason.tls_class() {
        return table
            .and_then(|t| t.on_tls.get(&class).copied())
            .unwrap_or_else(|| default_for_tls(class));
    }
    if let EndReason::InvalidRequest { .. }
    | EndReason::ProxyAuth { .. }
    | EndReason::ExtensionInvalid { .. } = reason
    {
        // A bad URL, credentials the proxy wants or refused, or an extension answer this
        // client cannot honour do not get better by retrying; a person has to act.
        return Action::Stop;
    }
    match reason {
        EndReason::PeerClosed { code, .. } => table
            .and_then(|t| t.on_close.get(code).copied())
            .unwrap_or_else(|| default_for_close(*code)),
        _ => Action::Backoff,
    }
}

/// Defaults by close code: 1001 (going away) and 1012 (service restart) come back at once
/// (from a live socket, the first time: see [`Action::ReconnectNow`]); 1008 (policy violation)
/// stops; everything else backs off.
pub fn default_for_close(code: CloseCode) -> Action {
    match code {
        CloseCode::GOING_AWAY | CloseCode::RESTART => Action::ReconnectNow,
        CloseCode::POLICY => Action::Stop,
        _ => Action::Backoff,
    }
}

/// Defaults by kind of TLS failure: a refused certificate and unusable TLS files stop (they
/// do not get better by retrying; a person has to act, and a restart or reload reads the files
/// again); a handshake that broke off backs off.
pub fn default_for_tls(class: TlsClass) -> Action {
    match class {
        TlsClass::Transient => Action::Backoff,
        _ => Action::Stop,
    }
}

/// Defaults by handshake status: 401, 403, 404 stop (credentials or URL are wrong); 429 and
/// everything else back off.
pub fn default_for_status(status: u16) -> Action {
    match status {
        401 | 403 | 404 => Action::Stop,
        _ => Action::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u16) -> EndReason {
        EndReason::PeerClosed {
            code: code.into(),
            reason: String::new(),
        }
    }

    #[test]
    fn defaults() {
        let table = ActionTable::default();
        assert_eq!(table.classify(&closed(1001)), Action::ReconnectNow);
        assert_eq!(table.classify(&closed(1012)), Action::ReconnectNow);
        assert_eq!(table.classify(&closed(1011)), Action::Backoff);
        assert_eq!(table.classify(&closed(1000)), Action::Backoff);
        assert_eq!(table.classify(&closed(1008)), Action::Stop);
        assert_eq!(table.classify(&EndReason::StreamEnded), Action::Backoff);
        for status in [401, 403, 404] {
            assert_eq!(
                table.classify(&EndReason::HandshakeRejected { status }),
                Action::Stop
            );
        }
        for status in [429, 500, 503] {
            assert_eq!(
                table.classify(&EndReason::HandshakeRejected { status }),
                Action::Backoff
            );
        }
        assert_eq!(
            table.classify(&EndReason::InvalidRequest { reason: "x".into() }),
            Action::Stop
        );
        assert_eq!(
            table.classify(&EndReason::ProxyAuth {
                reason: "HTTP/1.1 407".into()
            }),
            Action::Stop
        );
        for backs_off in [
            EndReason::ProxyRefused {
                reason: "HTTP/1.1 502".into(),
            },
            EndReason::ProxyFailed {
                reason: "cannot reach the proxy".into(),
                cause: None,
            },
            EndReason::HookFailed {
                reason: "503".into(),
            },
        ] {
            assert_eq!(table.classify(&backs_off), Action::Backoff, "{backs_off}");
        }
        assert_eq!(table.classify(&certificate()), Action::Stop);
        assert_eq!(table.classify(&files()), Action::Stop);
        assert_eq!(table.classify(&transient()), Action::Backoff);
    }

    fn certificate() -> EndReason {
        EndReason::Tls {
            reason: "invalid peer certificate: UnknownIssuer".into(),
        }
    }

    fn transient() -> EndReason {
        EndReason::TlsTransient {
            reason: "connection reset by peer".into(),
        }
    }

    fn files() -> EndReason {
        EndReason::TlsConfig {
            reason: "ca.pem: holds no certificate".into(),
        }
    }

    #[test]
    fn each_kind_of_tls_failure_can_be_overridden() {
        let mut table = ActionTable::default();
        table.on_tls.insert(TlsClass::Certificate, Action::Backoff);
        table.on_tls.insert(TlsClass::Transient, Action::Stop);
        table.on_tls.insert(TlsClass::Files, Action::ReconnectNow);
        assert_eq!(table.classify(&certificate()), Action::Backoff);
        assert_eq!(table.classify(&transient()), Action::Stop);
        assert_eq!(table.classify(&files()), Action::ReconnectNow);
    }

    #[test]
    fn overrides_win() {
        let mut table = ActionTable::default();
        table.on_close.insert(1008.into(), Action::Backoff);
        table.on_status.insert(404, Action::Backoff);
        table.on_close.insert(4000.into(), Action::Stop);
        assert_eq!(table.classify(&closed(1008)), Action::Backoff);
        assert_eq!(table.classify(&closed(4000)), Action::Stop);
        assert_eq!(
            table.classify(&EndReason::HandshakeRejected { status: 404 }),
            Action::Backoff
        );
    }
}
