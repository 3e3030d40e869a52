//! A TLS man in the middle for the replication port, for tests of first contact: it
//! terminates each client's TLS with a certificate of its own, opens its own TLS
//! connection to the target (accepting whatever certificate the target shows), and
//! forwards the replication protocol's frames (a u32 big-endian length, then the
//! payload) between the two, recording every plaintext byte and letting the test rewrite
//! frames on the way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Largest frame forwarded; anything larger closes the connection.
const MAX_FRAME: usize = 64 << 20;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the target.
    ToTarget,
    /// From the target back to the client.
    ToClient,
}

/// Rewrites one frame's payload in flight.
pub type Rewrite = Arc<dyn Fn(Direction, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Everything a [`TlsMitm`] saw: the plaintext of both directions, as received.
#[derive(Debug, Default)]
struct Seen {
    bytes: Vec<u8>,
    frames: u64,
}

/// A TLS-terminating proxy in front of `target`; see the module documentation.
pub struct TlsMitm {
    addr: SocketAddr,
    ca_pem: String,
    seen: Arc<Mutex<Seen>>,
    accept_task: JoinHandle<()>,
}

impl TlsMitm {
    /// Listens on `listen` (loopback only) and forwards to `target` (loopback only),
    /// presenting a certificate for `name` issued by a CA of its own, and passing every
    /// frame through `rewrite` if given.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        name: &str,
        rewrite: Option<Rewrite>,
    ) -> anyhow::Result<TlsMitm> {
        ensure!(
            listen.ip().is_loopback() && target.ip().is_loopback(),
            "the man in the middle stays on loopback ({listen} -> {target})"
        );
        let (ca_pem, chain, key) = certificate(name)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth();
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the man in the middle on {listen}"))?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let relay = Relay {
            target,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            seen: seen.clone(),
            rewrite,
        };
        let accept_task = tokio::spawn(relay.run(listener));
        Ok(TlsMitm {
            addr,
            ca_pem,
            seen,
            accept_task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that issued the certificate this proxy presents.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every plaintext byte received from either side so far.
    pub fn seen(&self) -> Vec<u8> {
        lock(&self.seen).bytes.clone()
    }

    /// Frames received from either side so far.
    pub fn frames(&self) -> u64 {
        lock(&self.seen).frames
    }
}

impl Drop for TlsMitm {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A CA and a leaf for `name` signed by it: (CA PEM, chain, leaf key).
fn certificate(
    name: &str,
) -> anyhow::Result<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, format!("Impostor CA {name}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec![name.to_owned()])?;
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((ca.pem(), vec![cert.der().clone()], key))
}

struct Relay {
    target: SocketAddr,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    seen: Arc<Mutex<Seen>>,
    rewrite: Option<Rewrite>,
}

impl Relay {
    async fn run(self, listener: TcpListener) {
        let relay = Arc::new(self);
        let mut tasks = JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            while tasks.try_join_next().is_some() {}
            let relay = relay.clone();
            tasks.spawn(async move {
                // A failed handshake or a closed side just ends this connection.
                let _ = relay.connection(client).await;
            });
        }
    }

    async fn connection(&self, client: TcpStream) -> anyhow::Result<()> {
        let client = self.acceptor.accept(client).await?;
        let upstream = TcpStream::connect(self.target).await?;
        let name = ServerName::try_from("shoal-mitm")?;
        let upstream = self.connector.connect(name, upstream).await?;
        let (client_rd, client_wr) = tokio::io::split(client);
        let (up_rd, up_wr) = tokio::io::split(upstream);
        tokio::select! {
            r = self.pump(client_rd, up_wr, Direction::ToTarget) => r,
            r = self.pump(up_rd, client_wr, Direction::ToClient) => r,
        }
    }

    async fn pump<R, W>(&self, mut rd: R, mut wr: W, direction: Direction) -> anyhow::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            let len = rd.read_u32().await? as usize;
            ensure!(len <= MAX_FRAME, "frame of {len} bytes");
            let mut payload = vec![0; len];
            rd.read_exact(&mut payload).await?;
            {
                let mut seen = lock(&self.seen);
                seen.bytes.extend_from_slice(&payload);
                seen.frames += 1;
            }
            if let Some(rewrite) = &self.rewrite {
                payload = rewrite(direction, payload);
            }
            wr.write_u32(u32::try_from(payload.len())?).await?;
            wr.write_all(&payload).await?;
            wr.flush().await?;
        }
    }
}

/// Accepts any server certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
