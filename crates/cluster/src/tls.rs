//! TLS configurations for the replication port.
//!
//! Every node has its own CA, and the set of CAs a node trusts changes while
//! it runs, so configurations are built on demand from a [`TrustStore`]
//! snapshot rather than once at start-up.
//!
//! Trust is pinned per node: a certificate naming node `x` is accepted only
//! if it was issued by the CA registered for `x`. Chaining to *some* trusted
//! CA is not enough, because every node holds a CA key and could otherwise
//! issue a certificate in another node's name.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme, SupportedProtocolVersion,
};

use crate::ClusterError;
use crate::identity::{Identity, cert_node_name, validate_node_name};

/// Only Shoal nodes speak on this port, so there is no older peer to accommodate.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider for every configuration here, never the process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The CAs this node trusts (its own always included).
#[derive(Debug)]
pub struct TrustStore {
    own: String,
    cas: RwLock<BTreeMap<String, TrustedCa>>,
}

#[derive(Debug, Clone)]
struct TrustedCa {
    pem: String,
    der: CertificateDer<'static>,
}

impl TrustStore {
    /// A trust set holding only `own`'s CA.
    pub fn new(own: &Identity) -> Self {
        let ca = TrustedCa {
            pem: own.ca_pem().to_owned(),
            der: own.ca_der().clone(),
        };
        Self {
            own: own.name().to_owned(),
            cas: RwLock::new(BTreeMap::from([(own.name().to_owned(), ca)])),
        }
    }

    /// Trusts `ca_pem` (exactly one PEM certificate) as the CA of `node`, replacing any previous one.
    pub fn set(&self, node: &str, ca_pem: &str) -> Result<(), ClusterError> {
        validate_node_name(node)?;
        let der = parse_ca(ca_pem)?;
        let mut cas = self.cas.write().unwrap_or_else(PoisonError::into_inner);
        if node == self.own {
            // Replacing our own CA here would make peers' correct certificates for us fail.
            return match cas.get(node) {
                Some(ca) if ca.der == der => Ok(()),
                _ => Err(ClusterError::Identity(format!(
                    "{node:?} is this node; its own CA cannot be replaced"
                ))),
            };
        }
        cas.insert(
            node.to_owned(),
            TrustedCa {
                pem: ca_pem.to_owned(),
                der,
            },
        );
        Ok(())
    }

    /// Trusts exactly `cas` (node name → CA PEM) besides this node's own CA: every other
    /// CA is dropped. Returns the nodes whose CA was unusable, with why; those are not
    /// trusted.
    pub fn replace(&self, cas: &BTreeMap<String, String>) -> Vec<(String, ClusterError)> {
        let mut failed = Vec::new();
        let mut current = self.cas.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = BTreeMap::new();
        for (node, pem) in cas {
            if *node == self.own {
                continue;
            }
            match current.get(node) {
                Some(ca) if ca.pem == *pem => {
                    next.insert(node.clone(), ca.clone());
                }
                _ => match validate_node_name(node).and_then(|()| parse_ca(pem)) {
                    Ok(der) => {
                        next.insert(
                            node.clone(),
                            TrustedCa {
                                pem: pem.clone(),
                                der,
                            },
                        );
                    }
                    Err(e) => failed.push((node.clone(), e)),
                },
            }
        }
        if let Some(own) = current.remove(&self.own) {
            next.insert(self.own.clone(), own);
        }
        *current = next;
        failed
    }

    /// Stops trusting `node`'s CA; this node's own CA stays.
    pub fn remove(&self, node: &str) {
        if node != self.own {
            self.cas
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(node);
        }
    }

    /// The trusted CAs as node name → CA PEM.
    pub fn pems(&self) -> BTreeMap<String, String> {
        self.snapshot()
            .into_iter()
            .map(|(node, ca)| (node, ca.pem))
            .collect()
    }

    fn snapshot(&self) -> BTreeMap<String, TrustedCa> {
        self.cas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One single-root store per node, which is what pins each node to its own CA.
    fn roots_by_node(&self) -> Result<BTreeMap<String, Arc<RootCertStore>>, ClusterError> {
        self.snapshot()
            .into_iter()
            .map(|(node, ca)| Ok((node, Arc::new(single_root(ca.der)?))))
            .collect()
    }
}

/// Server side of the replication port: presents our certificate; client certificates are OPTIONAL at the TLS layer (a joining node has none we trust yet), but when presented must chain to a trusted CA.
///
/// More precisely, a presented client certificate must name a node (see
/// [`peer_name`]) and be issued by the CA trusted for that node. Configs are
/// a snapshot: build a new one after the trust set changes.
pub fn server_config(
    identity: &Identity,
    trust: &TrustStore,
) -> Result<Arc<ServerConfig>, ClusterError> {
    let provider = provider();
    let roots = trust.roots_by_node()?;
    let mut all = RootCertStore::empty();
    let mut by_node = BTreeMap::new();
    for (node, root) in roots {
        all.roots.extend(root.roots.iter().cloned());
        let verifier = WebPkiClientVerifier::builder_with_provider(root, provider.clone())
            .build()
            .map_err(tls_err("client verifier"))?;
        by_node.insert(node, verifier);
    }
    let any = WebPkiClientVerifier::builder_with_provider(Arc::new(all), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(tls_err("client verifier"))?;
    let verifier = Arc::new(PinnedClientVerifier { any, by_node });

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("server config"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain(), identity.key())
        .map_err(tls_err("server certificate"))?;
    // A resumed session skips certificate verification, which would let a
    // node whose CA has since been removed back in.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Client side for an established peer: presents our certificate, verifies the server chains to a trusted CA AND that its certificate names `peer` (DNS SAN = peer name).
///
/// `peer` is the `ServerName` given at connect time (`ServerName::try_from(peer)`);
/// the server must be issued by the CA trusted for exactly that node.
pub fn client_config(
    identity: &Identity,
    trust: &TrustStore,
) -> Result<Arc<ClientConfig>, ClusterError> {
    let provider = provider();
    let verifier = Arc::new(ServerVerifier {
        pins: Some(trust.roots_by_node()?),
        algs: provider.signature_verification_algorithms,
    });
    client_with_verifier(identity, provider, verifier)
}

/// Client side for a first contact (add_node) when the peer's CA is not known yet:
/// presents no certificate (the peer cannot know our CA yet; the join's proof of the
/// admin password authenticates the request) and accepts any server certificate (trust
/// on first use).
///
/// The leaf is in `tls_stream.get_ref().1.peer_certificates()`; the handshake
/// has proven the server holds its key. Check it with [`signed_by`] against
/// the CA the peer sends and with [`peer_name`] before trusting that CA.
pub fn first_contact_config() -> Result<Arc<ClientConfig>, ClusterError> {
    let provider = provider();
    let verifier = Arc::new(ServerVerifier {
        pins: None,
        algs: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("client config"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The node name in a verified peer certificate (its DNS SAN, else CN) — for the server to learn who connected: given `tls_stream.get_ref().1.peer_certificates()`.
///
/// `None` without a certificate or when the name is not a valid node name.
pub fn peer_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    cert_node_name(certs?.first()?)
}

/// Whether `leaf` (DER) was signed by the CA in `ca_pem` — used after a first contact to check the peer's certificate against the CA it sent.
///
/// Also false when `leaf` is outside its validity period or not a server
/// certificate, so a `true` means the pair is usable with [`client_config`].
pub fn signed_by(leaf: &CertificateDer<'_>, ca_pem: &str) -> bool {
    check_signed_by(leaf, ca_pem).is_ok()
}

/// [`signed_by`] with the reason it fails.
pub(crate) fn check_signed_by(leaf: &CertificateDer<'_>, ca_pem: &str) -> Result<(), String> {
    let roots =
        single_root(parse_ca(ca_pem).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let cert = ParsedCertificate::try_from(leaf).map_err(|e| e.to_string())?;
    verify_server_cert_signed_by_trust_anchor(
        &cert,
        &roots,
        &[],
        UnixTime::now(),
        provider().signature_verification_algorithms.all,
    )
    .map_err(|e| e.to_string())
}

/// The SHA-256 fingerprint of the CA in `ca_pem`, as `openssl x509 -fingerprint -sha256`
/// shows it (`AB:CD:...`).
pub fn fingerprint(ca_pem: &str) -> Result<String, ClusterError> {
    let der = parse_ca(ca_pem)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    Ok(digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Whether `given` names the same fingerprint as `fingerprint` (from [`fingerprint`]):
/// case, colons and a leading `sha256:` or `SHA256 Fingerprint=` do not matter.
pub fn fingerprint_matches(given: &str, fingerprint: &str) -> bool {
    let bare = |s: &str| -> String {
        let s = s.trim();
        let s = s.rsplit_once('=').map_or(s, |(_, f)| f);
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        s.chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let given = bare(given);
    !given.is_empty() && given == bare(fingerprint)
}

/// Keying material exported from an established TLS session (RFC 5705): the same on both
/// ends of one session, different on any other, so a proof computed over it is good for
/// this connection only.
pub(crate) fn exporter<D>(conn: &rustls::ConnectionCommon<D>) -> Result<[u8; 32], ClusterError> {
    conn.export_keying_material([0; 32], b"EXPORTER-shoal-join", None)
        .map_err(tls_err("keying material exporter"))
}

fn client_with_verifier(
    identity: &Identity,
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<Arc<ClientConfig>, ClusterError> {
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("client config"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.cert_chain(), identity.key())
        .map_err(tls_err("client certificate"))?;
    // See server_config: resumption would bypass the pinned verification.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

fn parse_ca(pem: &str) -> Result<CertificateDer<'static>, ClusterError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err("CA certificate PEM"))?;
    // More than one would leave it ambiguous which CA speaks for the node.
    let [der] = <[_; 1]>::try_from(certs).map_err(|certs| {
        ClusterError::Tls(format!(
            "expected exactly one CA certificate in the PEM, found {}",
            certs.len()
        ))
    })?;
    single_root(der.clone())?;
    Ok(der)
}

fn single_root(der: CertificateDer<'static>) -> Result<RootCertStore, ClusterError> {
    let mut roots = RootCertStore::empty();
    roots.add(der).map_err(tls_err("CA certificate"))?;
    Ok(roots)
}

fn tls_err<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> ClusterError {
    move |e| ClusterError::Tls(format!("{context}: {e}"))
}

/// Accepts a client certificate only from the CA trusted for the node it names.
#[derive(Debug)]
struct PinnedClientVerifier {
    /// Over all trusted CAs and allowing anonymous clients; decides everything but the chain check.
    any: Arc<dyn ClientCertVerifier>,
    by_node: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.any.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.any.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.any.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verifier = cert_node_name(end_entity)
            .and_then(|node| self.by_node.get(&node))
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

/// Accepts a server certificate only from the CA trusted for the node being dialled, and
/// naming it; or, without pins (a first contact), any well-formed certificate, left to the
/// caller to judge. The handshake signatures are checked either way: they prove the
/// server holds the key of the certificate it presented.
#[derive(Debug)]
struct ServerVerifier {
    pins: Option<BTreeMap<String, Arc<RootCertStore>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(by_node) = &self.pins else {
            ParsedCertificate::try_from(end_entity)?;
            return Ok(ServerCertVerified::assertion());
        };
        let roots = match server_name {
            ServerName::DnsName(node) => by_node.get(node.as_ref()),
            _ => None,
        }
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algs.all)?;
        verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use tempfile::TempDir;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    fn identity(name: &str) -> (TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(dir.path(), name).unwrap();
        (dir, id)
    }

    fn trusting(own: &Identity, others: &[&Identity]) -> TrustStore {
        let trust = TrustStore::new(own);
        for other in others {
            trust.set(other.name(), other.ca_pem()).unwrap();
        }
        trust
    }

    struct Outcome {
        /// The server's view: who connected, or why the handshake failed.
        server: Result<Option<String>, String>,
        /// The client's view: the server's certificates, or why the exchange failed.
        client: Result<Vec<CertificateDer<'static>>, String>,
    }

    /// A handshake plus one message each way, because with TLS 1.3 a client
    /// learns that the server rejected its certificate only when it reads.
    async fn exchange(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .map_err(|e| e.to_string())?;
            let who = peer_name(tls.get_ref().1.peer_certificates());
            tls.write_all(b"hi").await.map_err(|e| e.to_string())?;
            let mut buf = [0; 1];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok(who)
        };
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let client = async move {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut tls = TlsConnector::from(client)
                .connect(server_name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0; 2];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(b"!").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok(tls.get_ref().1.peer_certificates().unwrap().to_vec())
        };
        let (server, client) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server, client)
        })
        .await
        .expect("exchange timed out");
        Outcome { server, client }
    }

    #[tokio::test]
    async fn mutually_trusting_nodes_connect_and_learn_names() {
        let (_da, a) = identity("node-a");
        let (_db, b) = identity("node-b");
        let out = exchange(
            server_config(&a, &trusting(&a, &[&b])).unwrap(),
            client_config(&b, &trusting(&b, &[&a])).unwrap(),
            "node-a",
        )
        .await;
        assert_eq!(out.server, Ok(Some("node-b".to_owned())));
        let certs = out.client.unwrap();
        assert_eq!(peer_name(Some(&certs)).as_deref(), Some("node-a"));
    }

    #[tokio::test]
    async fn client_not_trusting_the_server_ca_fails() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let out = exchange(
            server_config(&a, &trusting(&a, &[&b])).unwrap(),
            client_config(&b, &trusting(&b, &[])).unwrap(),
            "n1",
        )
        .await;
        assert!(out.client.is_err());
        assert!(out.server.is_err());
    }

    #[tokio::test]
    async fn client_expecting_another_peer_fails() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let (_dc, c) = identity("n3");
        let server = server_config(&a, &trusting(&a, &[&b])).unwrap();

        // The server chains to a CA registered for "n3", but its certificate names "n1".
        let trust = trusting(&b, &[&a, &c]);
        trust.set("n3", a.ca_pem()).unwrap();
        let out = exchange(server.clone(), client_config(&b, &trust).unwrap(), "n3").await;
        let err = out.client.unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");

        // The expected peer's CA did not issue the server's certificate.
        let trust = trusting(&b, &[&a, &c]);
        let out = exchange(server, client_config(&b, &trust).unwrap(), "n3").await;
        assert!(out.client.is_err());
    }

    #[tokio::test]
    async fn anonymous_client_is_accepted_without_a_name() {
        let (_da, a) = identity("n1");
        let server = server_config(&a, &TrustStore::new(&a)).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_root_certificates(single_root(a.ca_der().clone()).unwrap())
            .with_no_client_auth();
        let out = exchange(server, Arc::new(client), "n1").await;
        assert_eq!(out.server, Ok(None));
        assert!(out.client.is_ok());
    }

    #[tokio::test]
    async fn client_certificate_from_an_untrusted_ca_is_rejected() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let server = server_config(&a, &TrustStore::new(&a)).unwrap();
        let out = exchange(
            server,
            client_config(&b, &trusting(&b, &[&a])).unwrap(),
            "n1",
        )
        .await;
        assert!(out.server.is_err());
        assert!(out.client.is_err());
    }

    #[tokio::test]
    async fn removing_a_ca_takes_effect_in_the_next_config() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let trust = trusting(&a, &[&b]);
        let client = client_config(&b, &trusting(&b, &[&a])).unwrap();
        let out = exchange(server_config(&a, &trust).unwrap(), client.clone(), "n1").await;
        assert_eq!(out.server, Ok(Some("n2".to_owned())));
        trust.remove("n2");
        let out = exchange(server_config(&a, &trust).unwrap(), client, "n1").await;
        assert!(out.server.is_err());
    }

    /// A certificate for `victim` issued with `issuer_dir`'s CA key, stored as a loadable identity.
    fn forge(issuer_dir: &Path, issuer_name: &str, victim: &str) -> (TempDir, Identity) {
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(issuer_dir.join("ca.key")).unwrap())
                .unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("Shoal CA {issuer_name}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![victim.to_owned()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(issuer_dir.join("ca.pem"), dir.path().join("ca.pem")).unwrap();
        std::fs::write(dir.path().join("node.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("node.key"), key.serialize_pem()).unwrap();
        let id = Identity::load_or_create(dir.path(), victim).unwrap();
        (dir, id)
    }

    #[tokio::test]
    async fn a_trusted_node_cannot_impersonate_another() {
        let (_da, a) = identity("n1");
        let (db, b) = identity("n2");
        let (_dc, c) = identity("n3");
        let (_df, fake_a) = forge(db.path(), "n2", "n1");
        assert!(signed_by(&fake_a.cert_chain()[0], b.ca_pem()));

        // As a client: n3 trusts n1 and n2, and the forged "n1" connects.
        let out = exchange(
            server_config(&c, &trusting(&c, &[&a, &b])).unwrap(),
            client_config(&fake_a, &trusting(&fake_a, &[&c])).unwrap(),
            "n3",
        )
        .await;
        assert!(out.server.is_err(), "{:?}", out.server);

        // As a server: n3 dials "n1" and reaches the forgery.
        let out = exchange(
            server_config(&fake_a, &trusting(&fake_a, &[&c])).unwrap(),
            client_config(&c, &trusting(&c, &[&a, &b])).unwrap(),
            "n1",
        )
        .await;
        assert!(out.client.is_err(), "{:?}", out.client.map(|_| ()));
    }

    #[tokio::test]
    async fn first_contact_reaches_an_unknown_server_and_checks_it_afterwards() {
        let (_da, a) = identity("n1");
        let (_dx, other) = identity("n4");
        // The server knows nothing of the newcomer, which presents no certificate.
        let server = server_config(&a, &TrustStore::new(&a)).unwrap();
        let out = exchange(server, first_contact_config().unwrap(), "127.0.0.1").await;
        assert_eq!(out.server, Ok(None));
        let certs = out.client.unwrap();
        assert_eq!(peer_name(Some(&certs)).as_deref(), Some("n1"));
        assert!(signed_by(&certs[0], a.ca_pem()));
        assert!(!signed_by(&certs[0], other.ca_pem()));
        assert!(!signed_by(&certs[0], "not a pem"));
    }

    #[test]
    fn trust_store_validates_and_keeps_its_own_ca() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let trust = TrustStore::new(&a);
        assert_eq!(
            trust.pems(),
            BTreeMap::from([("n1".to_owned(), a.ca_pem().to_owned())])
        );

        trust.set("n2", b.ca_pem()).unwrap();
        assert_eq!(trust.pems()["n2"], b.ca_pem());
        assert!(matches!(
            trust.set("bad name", b.ca_pem()),
            Err(ClusterError::InvalidNodeName(_))
        ));
        assert!(matches!(
            trust.set("n3", "garbage"),
            Err(ClusterError::Tls(_))
        ));
        let two = format!("{}{}", a.ca_pem(), b.ca_pem());
        assert!(matches!(trust.set("n3", &two), Err(ClusterError::Tls(_))));
        let broken = a.ca_pem().replace("MII", "MIX");
        assert!(trust.set("n3", &broken).is_err());

        trust.set("n1", a.ca_pem()).unwrap();
        assert!(trust.set("n1", b.ca_pem()).is_err());
        trust.remove("n1");
        trust.remove("n2");
        trust.remove("never-there");
        assert_eq!(trust.pems().keys().collect::<Vec<_>>(), ["n1"]);
        assert_eq!(trust.pems()["n1"], a.ca_pem());
    }

    #[test]
    fn replacing_the_trusted_set_drops_the_others_and_keeps_our_own() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let (_dc, c) = identity("n3");
        let trust = trusting(&a, &[&b, &c]);
        let wanted = BTreeMap::from([
            ("n2".to_owned(), b.ca_pem().to_owned()),
            ("n4".to_owned(), "not a certificate".to_owned()),
            // Our own entry is never replaced from outside.
            ("n1".to_owned(), c.ca_pem().to_owned()),
        ]);
        let failed = trust.replace(&wanted);
        assert_eq!(
            failed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["n4"]
        );
        assert_eq!(
            trust.pems(),
            BTreeMap::from([
                ("n1".to_owned(), a.ca_pem().to_owned()),
                ("n2".to_owned(), b.ca_pem().to_owned()),
            ])
        );
        assert!(trust.replace(&BTreeMap::new()).is_empty());
        assert_eq!(trust.pems().keys().collect::<Vec<_>>(), ["n1"]);
    }

    #[test]
    fn fingerprints_match_however_they_are_written() {
        let (_da, a) = identity("n1");
        let (_db, b) = identity("n2");
        let fa = fingerprint(a.ca_pem()).unwrap();
        assert_eq!(fa.len(), 32 * 3 - 1, "{fa}");
        assert_ne!(fa, fingerprint(b.ca_pem()).unwrap());
        let bare = fa.replace(':', "").to_lowercase();
        for given in [
            fa.clone(),
            bare.clone(),
            format!("sha256:{bare}"),
            format!("SHA256 Fingerprint={fa}"),
            format!("  {}  ", fa.to_lowercase()),
        ] {
            assert!(fingerprint_matches(&given, &fa), "{given}");
        }
        for given in [
            "",
            ":",
            "00",
            &bare[..60],
            &fingerprint(b.ca_pem()).unwrap(),
        ] {
            assert!(!fingerprint_matches(given, &fa), "{given}");
        }
        assert!(fingerprint("garbage").is_err());
    }

    #[test]
    fn peer_name_needs_a_certificate() {
        let (_da, a) = identity("n1");
        assert_eq!(peer_name(None), None);
        assert_eq!(peer_name(Some(&[])), None);
        assert_eq!(peer_name(Some(&a.cert_chain())).as_deref(), Some("n1"));
    }
}
