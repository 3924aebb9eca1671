//! Certificates made on the spot for wss tests: a CA, a server certificate for chosen IP
//! addresses, and a client certificate for mTLS.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// PEM texts of a throw-away PKI.
#[derive(Clone)]
pub struct TestCerts {
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate (signed by the CA).
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
    /// A client certificate (signed by the CA) for mTLS.
    pub client_cert_pem: String,
    /// The client's private key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCerts { .. }")
    }
}

fn tls_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

impl TestCerts {
    /// A CA, a server certificate valid for `server_ips` only, and a client certificate.
    pub fn generate(server_ips: &[IpAddr]) -> io::Result<TestCerts> {
        TestCerts::generate_for(server_ips, &[])
    }

    /// Like [`TestCerts::generate`], the server certificate valid for `server_ips` and the
    /// host names `server_names` (`localhost`, to check that a client sent the name).
    pub fn generate_for(server_ips: &[IpAddr], server_names: &[&str]) -> io::Result<TestCerts> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsherd test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(tls_error)?)
            .map_err(tls_error)?;

        let server_key = KeyPair::generate().map_err(tls_error)?;
        let mut server = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        server.subject_alt_names = server_ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .collect();
        for name in server_names {
            let name = (*name).try_into().map_err(tls_error)?;
            server.subject_alt_names.push(SanType::DnsName(name));
        }
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca).map_err(tls_error)?;

        let client_key = KeyPair::generate().map_err(tls_error)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "wsherd test client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &ca).map_err(tls_error)?;

        Ok(TestCerts {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// Writes `ca.pem`, `client.pem` and `client.key` into `dir`; returns their paths.
    pub fn write_client_files(&self, dir: &Path) -> io::Result<(PathBuf, PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        let cert = dir.join("client.pem");
        let key = dir.join("client.key");
        std::fs::write(&ca, &self.ca_pem)?;
        std::fs::write(&cert, &self.client_cert_pem)?;
        std::fs::write(&key, &self.client_key_pem)?;
        Ok((ca, cert, key))
    }

    /// A rustls server configuration presenting the server certificate; with `require_client`
    /// it demands a client certificate signed by the CA.
    pub fn server_config(&self, require_client: bool) -> io::Result<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![
            CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).map_err(tls_error)?,
        ];
        let key =
            PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(tls_error)?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).map_err(tls_error)?)
                .map_err(tls_error)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(tls_error)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).map_err(tls_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
