//! TLS for `wss://`: rustls with the ring provider, Web PKI roots by default, a per-endpoint CA
//! file and client certificates.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::event::EndReason;

/// TLS files of one endpoint. With none set, servers are checked against the Web PKI roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// PEM file of the CA certificates to trust *instead of* the Web PKI roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to servers that ask for one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// Builds the rustls client configuration for `files` (or the defaults). ALPN offers only
/// `http/1.1`: an h2-capable server would otherwise pick h2, where a WebSocket upgrade fails.
///
/// It reads the files, which can block: a [`Connection`](crate::Connection) calls it on the
/// blocking pool before an attempt, and only when a file changed since the last read.
pub fn client_config(files: Option<&TlsFiles>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match files.and_then(|f| f.ca_file.as_ref()) {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots);
    let cert = files.and_then(|f| f.client_cert.as_ref());
    let key = files.and_then(|f| f.client_key.as_ref());
    let mut config = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "{}: client certificate and key do not fit: {e}",
                    cert.display()
                )
            })?
        }
        (Some(_), None) => return Err("client_cert needs client_key".to_owned()),
        (None, Some(_)) => return Err("client_key needs client_cert".to_owned()),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The TLS failure in `error` (from a connect), sorted by whether retrying can help; `None`
/// when rustls had nothing to say.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<EndReason> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(classify(tls));
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(classify(tls));
        }
        current = error.source();
    }
    None
}

/// An I/O error of a `wss://` connect that can only have happened once TCP was up, during
/// the TLS handshake: the peer reset or ended the connection. Worth another try.
pub(crate) fn tls_interrupted(error: &std::io::Error) -> Option<EndReason> {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
            | ErrorKind::BrokenPipe
    )
    .then(|| EndReason::TlsTransient {
        reason: error.to_string(),
    })
}

fn classify(error: &rustls::Error) -> EndReason {
    let reason = error.to_string();
    if refused(error) {
        EndReason::Tls { reason }
    } else {
        EndReason::TlsTransient { reason }
    }
}

/// Whether `error` is a refusal that stays until someone changes a certificate or a TLS
/// setting: a certificate refused by either side, or terms the two sides cannot agree on.
/// Everything else (garbled records, decrypt errors, internal-error alerts) may pass.
fn refused(error: &rustls::Error) -> bool {
    use rustls::{AlertDescription as Alert, Error};
    match error {
        Error::InvalidCertificate(_)
        | Error::NoCertificatesPresented
        | Error::UnsupportedNameType
        | Error::InvalidCertRevocationList(_)
        | Error::InconsistentKeys(_)
        | Error::PeerIncompatible(_)
        | Error::NoApplicationProtocol => true,
        Error::AlertReceived(alert) => matches!(
            alert,
            Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::AccessDenied
                | Alert::NoCertificate
                | Alert::CertificateRequired
                | Alert::CertificateUnobtainable
                | Alert::BadCertificateStatusResponse
                | Alert::BadCertificateHashValue
                | Alert::UnrecognisedName
                | Alert::HandshakeFailure
                | Alert::ProtocolVersion
                | Alert::InsufficientSecurity
                | Alert::NoApplicationProtocol
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file_errors() {
        let config = client_config(None).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        let missing = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(
            client_config(Some(&missing))
                .unwrap_err()
                .contains("/nonexistent/ca.pem")
        );
        let half = TlsFiles {
            client_cert: Some("/x.pem".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            client_config(Some(&half)).unwrap_err(),
            "client_cert needs client_key"
        );
    }

    #[test]
    fn refused_certificates_and_terms_are_told_from_failures_that_may_pass() {
        use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};
        let certificate = [
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
            Error::InvalidCertificate(CertificateError::Expired),
            Error::InvalidCertificate(CertificateError::NotValidForName),
            Error::AlertReceived(AlertDescription::CertificateRequired),
            Error::AlertReceived(AlertDescription::UnknownCA),
            Error::AlertReceived(AlertDescription::HandshakeFailure),
        ];
        for error in certificate {
            assert!(
                matches!(classify(&error), EndReason::Tls { .. }),
                "{error:?}"
            );
        }
        let transient = [
            Error::InvalidMessage(InvalidMessage::InvalidContentType),
            Error::DecryptError,
            Error::AlertReceived(AlertDescription::InternalError),
            Error::General("boom".into()),
        ];
        for error in transient {
            assert!(
                matches!(classify(&error), EndReason::TlsTransient { .. }),
                "{error:?}"
            );
        }
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            tls_failure(&wrapped),
            Some(EndReason::Tls { reason }) if reason.contains("UnknownIssuer")
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(tls_failure(&reset).is_none());
        assert!(matches!(
            tls_interrupted(&reset),
            Some(EndReason::TlsTransient { .. })
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(tls_interrupted(&refused).is_none());
    }
}
