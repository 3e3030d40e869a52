//! TLS on the Operations API, HTTP and MQTT ports: the server's certificate (configured, or
//! generated on first start and kept), the handshake and its timeout, and client
//! certificates (mTLS) that log a user in.
//!
//! As Harper does, a client certificate is asked for only when mTLS is on. Unless it is
//! required, a client may send none, or one this node does not trust: the handshake
//! succeeds and the certificate is ignored (the request must then log in another way).
//! When required, a connection without a certificate from the configured CA fails its
//! handshake.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as Subject, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// File names of a generated certificate, inside [`TlsOptions::generated_dir`] (Harper's
/// names for its own).
const GENERATED_CA: &str = "ca.pem";
const GENERATED_CERT: &str = "certificate.pem";
const GENERATED_KEY: &str = "privateKey.pem";
/// A generated certificate is for development; it need not be rotated.
const GENERATED_VALIDITY: Duration = Duration::from_secs(3653 * 24 * 3600);
/// Backdated so that clients whose clocks run somewhat behind still accept it.
const GENERATED_BACKDATE: Duration = Duration::from_secs(24 * 3600);
/// The only protocol served: ALPN tells clients that offer HTTP/2 to use HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// How the secure ports are set up.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The server's certificate chain (PEM); `None`: a generated one.
    pub certificate: Option<PathBuf>,
    /// The private key of `certificate` (PEM).
    pub private_key: Option<PathBuf>,
    /// The CAs client certificates must chain to (PEM), for mTLS.
    pub certificate_authority: Option<PathBuf>,
    /// Where a generated certificate, its CA and key are kept.
    pub generated_dir: PathBuf,
    /// Host names and addresses a generated certificate is made for.
    pub generated_names: Vec<String>,
    /// A client that has not completed its handshake this long after connecting is
    /// dropped.
    pub handshake_timeout: Duration,
    /// Client certificates, when on.
    pub mtls: Option<MtlsOptions>,
}

/// Client certificates (Harper's `http.mtls`).
#[derive(Debug, Clone)]
pub struct MtlsOptions {
    /// Who a verified client certificate logs in as.
    pub user: MtlsUser,
    /// Connections without a verified client certificate fail their handshake.
    pub required: bool,
}

/// Who a verified client certificate logs in as (Harper's `http.mtls.user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MtlsUser {
    /// The user named by the certificate subject's common name (the default).
    CommonName,
    /// This user, whatever the certificate names.
    Named(String),
    /// Nobody: the certificate only lets the connection in (with `required`), and each
    /// request logs in with its credentials.
    Nobody,
}

/// What a secure connection tells its requests, carried as a request extension: that
/// they came over TLS, and the user its verified client certificate logs in as, if any.
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    /// The user a verified client certificate names (mTLS).
    pub(crate) user: Option<Arc<str>>,
}

/// A secure port's TLS set-up, shared by its connections.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// The same, offering no application protocol: MQTT clients may ask for one (`mqtt`,
    /// or a vendor's name) that an HTTP-only list would refuse in the handshake.
    mqtt_acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    mtls: Option<Mtls>,
}

struct Mtls {
    user: MtlsUser,
    /// Checks a client certificate against the configured CA, after the handshake (which
    /// lets an unverified one through unless mTLS is required).
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("mtls_user", &self.mtls.as_ref().map(|m| &m.user))
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the configured certificate and key, or the generated ones (made on the first
    /// call and kept in [`TlsOptions::generated_dir`]), and the client CA for mTLS.
    pub fn new(options: &TlsOptions) -> Result<Arc<ServerTls>, TlsError> {
        let (chain, key) = match (&options.certificate, &options.private_key) {
            (Some(cert), Some(key)) => (read_chain(cert)?, read_key(key)?),
            (None, None) => generated(&options.generated_dir, &options.generated_names)?,
            _ => {
                return Err(TlsError(
                    "tls.certificate and tls.private_key go together: set both, or neither for a generated certificate".into(),
                ));
            }
        };
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(err("TLS versions"))?;
        let (builder, mtls) = match &options.mtls {
            None => (builder.with_no_client_auth(), None),
            Some(mtls) => {
                let path = options.certificate_authority.as_ref().ok_or_else(|| {
                    TlsError("mTLS needs tls.certificate_authority: the CA client certificates are checked against".into())
                })?;
                let mut roots = RootCertStore::empty();
                for ca in read_chain(path)? {
                    roots
                        .add(ca)
                        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(err("client certificate verifier"))?;
                let handshake: Arc<dyn ClientCertVerifier> = if mtls.required {
                    verifier.clone()
                } else {
                    Arc::new(Optional(verifier.clone()))
                };
                let mtls = Mtls {
                    user: mtls.user.clone(),
                    verifier,
                };
                (builder.with_client_cert_verifier(handshake), Some(mtls))
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(err("the server certificate and key"))?;
        let mqtt_acceptor = TlsAcceptor::from(Arc::new(config.clone()));
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            mqtt_acceptor,
            handshake_timeout: options.handshake_timeout,
            mtls,
        }))
    }

    /// Completes the handshake (or fails once the handshake timeout is up); the user a
    /// verified client certificate logs in as, if any.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, TlsClient)> {
        self.accept_with(&self.acceptor, stream).await
    }

    /// Like [`ServerTls::accept`], for the MQTT port: no application protocol offered.
    pub(crate) async fn accept_mqtt(
        &self,
        stream: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, TlsClient)> {
        self.accept_with(&self.mqtt_acceptor, stream).await
    }

    async fn accept_with(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, TlsClient)> {
        let stream = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let user = self.certificate_user(&stream);
        Ok((stream, TlsClient { user }))
    }

    fn certificate_user(&self, stream: &TlsStream<TcpStream>) -> Option<Arc<str>> {
        let mtls = self.mtls.as_ref()?;
        let (end_entity, intermediates) = stream.get_ref().1.peer_certificates()?.split_first()?;
        // Checked again even when the handshake checked it: a certificate let through
        // unverified (mTLS not required) must log nobody in.
        mtls.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .ok()?;
        let name = match &mtls.user {
            MtlsUser::CommonName => common_name(end_entity)?,
            MtlsUser::Named(name) => name.clone(),
            MtlsUser::Nobody => return None,
        };
        Some(name.into())
    }
}

/// The crypto provider for every configuration here, never the process-wide default.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> TlsError {
    move |e| TlsError(format!("{what}: {e}"))
}

/// The subject's common name of a certificate.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

/// Asks for a client certificate but lets the handshake through without one, or with one
/// that does not verify; [`ServerTls::accept`] checks it afterwards. The handshake's own
/// signatures are still checked: a client must hold the key of what it presents.
#[derive(Debug)]
struct Optional(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Optional {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[Subject] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| TlsError(format!("reading {}: {e}", path.display())))
}

/// Every certificate in a PEM file, in order.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("{}: no PEM certificate", path.display())));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|e| TlsError(format!("{}: no PEM private key: {e}", path.display())))
}

/// The generated certificate and key in `dir`, made there first if absent. Its CA's key
/// is never kept: the CA signs this one certificate, and clients trust `ca.pem`.
fn generated(
    dir: &Path,
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (cert, key) = (dir.join(GENERATED_CERT), dir.join(GENERATED_KEY));
    let exists = |path: &Path| {
        path.try_exists()
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))
    };
    if !(exists(&cert)? && exists(&key)?) {
        generate(dir, names)?;
    }
    Ok((read_chain(&cert)?, read_key(&key)?))
}

fn generate(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|e| TlsError(format!("creating {}: {e}", dir.display())))?;
    let gen_err = err("generating a certificate");
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = subject("Shoal generated CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - GENERATED_BACKDATE;
    ca_params.not_after = now + GENERATED_VALIDITY;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(&gen_err)?)
        .map_err(&gen_err)?;

    let mut params = CertificateParams::new(names.to_vec()).map_err(&gen_err)?;
    params.distinguished_name = subject(names.first().map_or("localhost", String::as_str));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - GENERATED_BACKDATE;
    params.not_after = now + GENERATED_VALIDITY;
    let key = KeyPair::generate().map_err(&gen_err)?;
    let cert = params.signed_by(&key, &ca).map_err(&gen_err)?;

    // The certificate last: a start interrupted before it leaves no usable pair, and
    // the next start makes a new one.
    let write = |file, contents: String, secret| {
        shoal_cluster::identity::write_file(dir, file, &contents, secret)
            .map_err(|e| TlsError(e.to_string()))
    };
    write(GENERATED_CA, ca.pem(), false)?;
    write(GENERATED_KEY, key.serialize_pem(), true)?;
    write(GENERATED_CERT, cert.pem(), false)?;
    tracing::info!(dir = %dir.display(), "generated a TLS certificate; clients trust {GENERATED_CA}");
    Ok(())
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
