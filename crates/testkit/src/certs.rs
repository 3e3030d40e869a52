//! Certificates for tests of the secure (TLS) ports: a CA that issues server and client
//! certificates, and HTTPS clients that trust a given CA (and log in with a client
//! certificate).

use std::time::Duration;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate issued by a [`TestCa`], PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Issued {
    /// Certificate then key, as `reqwest::Identity::from_pem` and `curl --cert` take them.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl TestCa {
    /// A fresh CA whose subject's common name is `name`.
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM: what clients (or a node, for mTLS) trust.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn server(&self, names: &[&str]) -> anyhow::Result<Issued> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cn = names.first().cloned().unwrap_or_default();
        self.issue(names, &cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject's common name is `cn`.
    pub fn client(&self, cn: &str) -> anyhow::Result<Issued> {
        self.issue(Vec::new(), cn, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        names: Vec<String>,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// An HTTPS client that trusts only the CA certificates in `ca_pem`, and presents
/// `identity` (certificate and key, PEM) when the server asks for a client certificate.
pub fn https_client(ca_pem: &str, identity: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
    let cas = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
        .context("reading the CA certificates")?;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .tls_certs_only(cas);
    if let Some(identity) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(identity.identity_pem().as_bytes())
                .context("reading the client certificate")?,
        );
    }
    builder.build().context("building the HTTPS client")
}

/// A TLS connection to `addr` (a loopback address, also the name the certificate must
/// carry) that trusts only the CA certificates in `ca_pem`, presents `identity` when asked
/// for a client certificate, and offers the application protocols `alpn` (none if empty):
/// for secure ports spoken by clients other than HTTP (MQTT, WebSocket).
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<&Issued>,
    alpn: &[&str],
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    anyhow::ensure!(addr.ip().is_loopback(), "tests stay on loopback ({addr})");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.context("reading the CA certificates")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("reading the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                .context("reading the client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .context("connecting timed out")??;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(REQUEST_TIMEOUT, connector.connect(name, tcp))
        .await
        .context("the TLS handshake timed out")?
        .with_context(|| format!("TLS handshake with {addr}"))
}
