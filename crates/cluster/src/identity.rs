//! A node's own certificate authority and TLS certificate, persisted on disk.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::ClusterError;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const NODE_CERT: &str = "node.pem";
const NODE_KEY: &str = "node.key";

/// Long enough that nobody has to plan a rotation: access is revoked by
/// dropping a CA from the trust set, not by expiry.
const VALIDITY: Duration = Duration::from_secs(3653 * 24 * 3600);
/// Backdated so that peers whose clocks run somewhat behind still accept a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// A node's CA and certificate, persisted in `<dir>`: ca.pem, ca.key, node.pem, node.key (keys mode 0600).
pub struct Identity {
    name: String,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads from `dir`, or creates a fresh CA and node certificate for `name` there (first start). Errors if the stored node cert's name differs from `name`.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Identity, ClusterError> {
        validate_node_name(name)?;
        let mut missing = Vec::new();
        for file in [CA_CERT, CA_KEY, NODE_CERT, NODE_KEY] {
            let path = dir.join(file);
            if !path.try_exists().map_err(io_at(&path))? {
                missing.push(file);
            }
        }
        if missing.len() == 4 {
            create(dir, name)?;
        } else if let Some(file) = missing.iter().find(|f| **f != CA_KEY) {
            // Recreating would silently change the CA that peers already trust, so an
            // operator has to decide; the CA key alone may legitimately be kept offline.
            return Err(ClusterError::Identity(format!(
                "{} holds an incomplete identity ({file} is missing); restore it, or delete the directory to create a new identity",
                dir.display()
            )));
        }
        // Loading right after creating checks that what was written reads back correctly.
        load(dir, name)
    }

    /// The node name this identity was issued for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's CA certificate, PEM — what peers must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The node's certificate chain for rustls.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        // The CA is left out: peers trust it as a root, so sending it would only add bytes.
        vec![self.cert.clone()]
    }

    /// The node's private key for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    pub(crate) fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A secret for `purpose`, derived from the node's private key: the same across
    /// restarts, known to nobody else.
    pub(crate) fn derived_secret(&self, purpose: &str) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key.secret_der());
        hmac::sign(&key, purpose.as_bytes()).as_ref().to_vec()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            ca_pem: self.ca_pem.clone(),
            ca_der: self.ca_der.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that the private key never ends up in a log line.
        f.debug_struct("Identity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Checks that `name` can be a node name: a DNS host name (`n1`, `db1.eu-west.example.com`),
/// that is dot-separated labels of 1-63 `[A-Za-z0-9-]` not starting or ending with '-',
/// at most 253 characters, not ending in a number.
pub fn validate_node_name(name: &str) -> Result<(), ClusterError> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // Certificate name checks refuse names whose last label is a number (`12`, `10.0.0.1`,
    // `0x1f`) as IP-address look-alikes, so a node with such a name could never be
    // verified by its peers.
    if name.len() <= 253 && name.split('.').all(label) && DnsName::try_from(name).is_ok() {
        Ok(())
    } else {
        Err(ClusterError::InvalidNodeName(name.to_owned()))
    }
}

fn create(dir: &Path, name: &str) -> Result<(), ClusterError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let gen_err = |e: rcgen::Error| ClusterError::Identity(format!("generating certificates: {e}"));
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = common_name(&format!("Shoal CA {name}"));
    // Path length 0: this CA only ever signs its own node's certificate.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - BACKDATE;
    ca_params.not_after = now + VALIDITY;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(gen_err)?)
        .map_err(gen_err)?;

    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(gen_err)?;
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // One certificate serves both directions of replication: it accepts and it dials.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &ca).map_err(gen_err)?;

    // Keys first and node.pem last, so an interrupted first start leaves an
    // identity that is detectably incomplete rather than one that looks whole.
    write_file(dir, CA_KEY, &ca.key().serialize_pem(), true)?;
    write_file(dir, NODE_KEY, &key.serialize_pem(), true)?;
    write_file(dir, CA_CERT, &ca.pem(), false)?;
    write_file(dir, NODE_CERT, &cert.pem(), false)?;
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    tracing::info!(node = name, dir = %dir.display(), "created a new node CA and certificate");
    Ok(())
}

fn load(dir: &Path, name: &str) -> Result<Identity, ClusterError> {
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read_to_string(&path).map_err(io_at(&path))
    };
    let bad = |file: &str, what: String| {
        ClusterError::Identity(format!("{}: {what}", dir.join(file).display()))
    };

    let ca_pem = read(CA_CERT)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| bad(CA_CERT, format!("no CA certificate: {e}")))?;
    let cert = CertificateDer::from_pem_slice(read(NODE_CERT)?.as_bytes())
        .map_err(|e| bad(NODE_CERT, format!("no node certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(read(NODE_KEY)?.as_bytes())
        .map_err(|e| bad(NODE_KEY, format!("no private key: {e}")))?;

    let stored = cert_node_name(&cert)
        .ok_or_else(|| bad(NODE_CERT, "the certificate names no valid node".into()))?;
    if stored != name {
        return Err(ClusterError::Identity(format!(
            "{} holds the identity of node {stored:?}, not {name:?}; start with that name or use another directory",
            dir.display()
        )));
    }
    crate::tls::check_signed_by(&cert, &ca_pem)
        .map_err(|e| bad(NODE_CERT, format!("not usable with {CA_CERT}: {e}")))?;
    rustls::sign::CertifiedKey::from_der(
        vec![cert.clone()],
        key.clone_key(),
        &crate::tls::provider(),
    )
    .map_err(|e| bad(NODE_KEY, format!("does not fit {NODE_CERT}: {e}")))?;

    Ok(Identity {
        name: stored,
        ca_pem,
        ca_der,
        cert,
        key,
    })
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes via a temporary file and rename so a crash never leaves a truncated key or
/// certificate; a `secret` file is readable by its owner only.
pub fn write_file(
    dir: &Path,
    file: &str,
    contents: &str,
    secret: bool,
) -> Result<(), ClusterError> {
    let tmp = dir.join(format!(".{file}.tmp"));
    // A leftover from a crash would keep its old permissions through `create`, so start afresh.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(&tmp)(e)),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = options.open(&tmp).map_err(io_at(&tmp))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_at(&tmp))?;
    let path = dir.join(file);
    fs::rename(&tmp, &path).map_err(io_at(&path))
}

/// Keeps the error kind but names the file, which a bare `io::Error` does not.
fn io_at(path: &Path) -> impl Fn(io::Error) -> ClusterError + '_ {
    move |e| ClusterError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The node name in a certificate: its first DNS SAN, else its CN; `None` unless that is
/// a valid node name, or if the certificate does not parse or holds more than one SAN
/// extension. Callers rely on it only for certificates that rustls has already verified.
pub(crate) fn cert_node_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()?;
    let dns = san
        .into_iter()
        .flat_map(|ext| &ext.value.general_names)
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        });
    let name = match dns {
        Some(dns) => dns,
        None => cert.subject().iter_common_name().next()?.as_str().ok()?,
    };
    validate_node_name(name).ok().map(|()| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), "node-a").unwrap();
        assert_eq!(first.name(), "node-a");
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        for file in [CA_CERT, CA_KEY, NODE_CERT, NODE_KEY] {
            assert!(dir.path().join(file).is_file(), "{file}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [CA_KEY, NODE_KEY] {
                let mode = fs::metadata(dir.path().join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }

        let again = Identity::load_or_create(dir.path(), "node-a").unwrap();
        assert_eq!(again.ca_pem(), first.ca_pem());
        assert_eq!(again.cert_chain(), first.cert_chain());
        assert_eq!(again.key().secret_der(), first.key().secret_der());
        assert_eq!(
            cert_node_name(&again.cert_chain()[0]).as_deref(),
            Some("node-a")
        );
        assert_eq!(
            cert_node_name(again.ca_der()),
            None,
            "CA CN is not a node name"
        );
        assert!(!format!("{again:?}").contains("PRIVATE"));
    }

    #[test]
    fn another_name_for_a_stored_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), "n1").unwrap();
        let err = Identity::load_or_create(dir.path(), "n2").unwrap_err();
        assert!(matches!(err, ClusterError::Identity(_)), "{err}");
        assert!(err.to_string().contains("\"n1\""), "{err}");
    }

    #[test]
    fn incomplete_identity_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), "n1").unwrap();
        fs::remove_file(dir.path().join(NODE_CERT)).unwrap();
        let err = Identity::load_or_create(dir.path(), "n1").unwrap_err();
        assert!(err.to_string().contains(NODE_CERT), "{err}");

        // The CA key may be kept offline once the node certificate exists.
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), "n1").unwrap();
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        Identity::load_or_create(dir.path(), "n1").unwrap();
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Identity::load_or_create(a.path(), "n1").unwrap();
        Identity::load_or_create(b.path(), "n1").unwrap();
        fs::copy(b.path().join(NODE_KEY), a.path().join(NODE_KEY)).unwrap();
        let err = Identity::load_or_create(a.path(), "n1").unwrap_err();
        assert!(err.to_string().contains(NODE_KEY), "{err}");
    }

    #[test]
    fn node_names_are_validated() {
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        for good in [
            "n1",
            "node-a",
            "A",
            "a-b-c",
            "x1y",
            &"a".repeat(63),
            "a.b",
            "db1.eu-west.example.com",
            "DB1.Example.COM",
            "12.example",
            "node-1.12a",
            "xn--bcher-kva.example",
            &longest,
        ] {
            validate_node_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a_b",
            "a b",
            "é",
            "bücher.example",
            "12",
            "0",
            "0x1f",
            &"a".repeat(64),
            // Host names, but not node names.
            ".",
            ".a",
            "a.",
            "a..b",
            "db1.-eu.example",
            "db1.eu-.example",
            "a.b_c.example",
            &format!("{}.b", "a".repeat(64)),
            &format!("{longest}e"),
            &format!("{longest}.e"),
            // IP addresses and their look-alikes.
            "10.0.0.1",
            "127.0.0.1",
            "a.12",
            "a.0x1f",
            "::1",
            "[::1]",
            "*.example.com",
        ] {
            assert!(
                matches!(
                    validate_node_name(bad),
                    Err(ClusterError::InvalidNodeName(_))
                ),
                "{bad:?} accepted"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load_or_create(dir.path(), "bad name").is_err());
        assert!(!dir.path().join(CA_CERT).exists());
    }

    #[test]
    fn name_falls_back_to_the_common_name() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("cn-only");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_node_name(cert.der()).as_deref(), Some("cn-only"));

        let mut params = CertificateParams::new(vec!["not_a_node".to_owned()]).unwrap();
        params.distinguished_name = common_name("n1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_node_name(cert.der()), None, "SAN wins over CN");

        assert_eq!(cert_node_name(b"\x30\x03\x30\x01"), None);
        assert_eq!(cert_node_name(&[]), None);
    }

    /// A certificate signed by a fresh key, with `sans` and a subject of `subject`.
    fn cert_with(sans: Vec<rcgen::SanType>, subject: &[(DnType, rcgen::DnValue)]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        for (kind, value) in subject {
            dn.push(kind.clone(), value.clone());
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// The names recorded from the hand-written DER walk that `cert_node_name` once was,
    /// for the certificates nodes make and the shapes around them: whatever parses the
    /// certificate, the same certificates must name the same nodes (or none).
    #[test]
    fn certificate_node_names_match_the_recorded_results() {
        use rcgen::{DnValue, SanType};
        let dns = |name: &str| SanType::DnsName(name.try_into().unwrap());
        let cn = |name: &str| (DnType::CommonName, DnValue::Utf8String(name.into()));

        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path(), "node-a").unwrap();
        let node = identity.cert_chain()[0].to_vec();
        let mut trailing = node.clone();
        trailing.extend_from_slice(b"\x05\x00");

        let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            ("node certificate", node.clone(), Some("node-a")),
            ("node CA", identity.ca_der().to_vec(), None),
            (
                "node certificate with trailing bytes",
                trailing,
                Some("node-a"),
            ),
            (
                "truncated node certificate",
                node[..node.len() - 1].to_vec(),
                None,
            ),
            (
                "CN only",
                cert_with(vec![], &[cn("cn-only")]),
                Some("cn-only"),
            ),
            (
                "PrintableString CN",
                cert_with(
                    vec![],
                    &[(
                        DnType::CommonName,
                        DnValue::PrintableString("printable".try_into().unwrap()),
                    )],
                ),
                Some("printable"),
            ),
            (
                "IA5String CN",
                cert_with(
                    vec![],
                    &[(
                        DnType::CommonName,
                        DnValue::Ia5String("ia5-cn".try_into().unwrap()),
                    )],
                ),
                Some("ia5-cn"),
            ),
            (
                "CN after other attributes",
                cert_with(
                    vec![],
                    &[
                        (
                            DnType::CountryName,
                            DnValue::PrintableString("NL".try_into().unwrap()),
                        ),
                        (DnType::OrganizationName, DnValue::Utf8String("Org".into())),
                        cn("n5"),
                    ],
                ),
                Some("n5"),
            ),
            (
                "CN with a space",
                cert_with(vec![], &[cn("Shoal CA n1")]),
                None,
            ),
            ("numeric CN", cert_with(vec![], &[cn("12")]), None),
            ("no names at all", cert_with(vec![], &[]), None),
            (
                "several DNS SANs",
                cert_with(vec![dns("first"), dns("second")], &[cn("cn")]),
                Some("first"),
            ),
            (
                "IP SAN before a DNS SAN",
                cert_with(
                    vec![SanType::IpAddress([127, 0, 0, 1].into()), dns("n2")],
                    &[cn("cn")],
                ),
                Some("n2"),
            ),
            (
                "only an IP SAN: the CN",
                cert_with(
                    vec![SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into())],
                    &[cn("n3")],
                ),
                Some("n3"),
            ),
            (
                "e-mail and URI SANs: the CN",
                cert_with(
                    vec![
                        SanType::Rfc822Name("a@b.example".try_into().unwrap()),
                        SanType::URI("https://b.example/".try_into().unwrap()),
                    ],
                    &[cn("n4")],
                ),
                Some("n4"),
            ),
            (
                "invalid DNS SAN wins over the CN",
                cert_with(vec![dns("a_b")], &[cn("n1")]),
                None,
            ),
            (
                "numeric DNS SAN",
                cert_with(vec![dns("12")], &[cn("n1")]),
                None,
            ),
            // Refused by the walk, whose node names had no dots.
            (
                "dotted DNS SAN",
                cert_with(vec![dns("db1.eu-west.example.com")], &[cn("n1")]),
                Some("db1.eu-west.example.com"),
            ),
            (
                "dotted CN",
                cert_with(vec![], &[cn("db2.eu-west.example.com")]),
                Some("db2.eu-west.example.com"),
            ),
            (
                "IP address as a DNS SAN",
                cert_with(vec![dns("10.0.0.1")], &[cn("n1")]),
                None,
            ),
            // An empty subject makes the SAN extension critical.
            (
                "critical SAN",
                cert_with(vec![dns("critical-san")], &[]),
                Some("critical-san"),
            ),
            ("empty input", Vec::new(), None),
            ("empty sequences", b"\x30\x03\x30\x01\x00".to_vec(), None),
            ("not DER", b"-----BEGIN CERTIFICATE-----".to_vec(), None),
        ];
        for (what, der, expected) in cases {
            assert_eq!(cert_node_name(&der).as_deref(), expected, "{what}");
        }
    }
}
