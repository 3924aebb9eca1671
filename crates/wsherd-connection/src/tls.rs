//! TLS for `wss://`: rustls with the ring provider, Web PKI roots by default, a per-endpoint CA
//! file and client certificates.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// Says which TLS check failed, when `error` (from a connect) is a TLS failure.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        current = error.source();
    }
    None
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
}
