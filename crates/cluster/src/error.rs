//! Errors of the cluster crate.

/// What went wrong in cluster identity, trust or transport handling.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node name is not a DNS host name: dot-separated labels of 1-63 `[A-Za-z0-9-]`
    /// without a leading or trailing `-`, at most 253 characters, not ending in a number
    /// such as `12`, `10.0.0.1` or `0x1f`.
    #[error(
        "invalid node name {0:?}: use a host name, labels of 1-63 letters, digits or '-' separated by dots, no label starting or ending with '-', at most 253 characters, and not ending in a number"
    )]
    InvalidNodeName(String),
    /// The stored identity is unusable or belongs to another node; needs operator attention.
    #[error("node identity: {0}")]
    Identity(String),
    /// A certificate, key or TLS configuration was rejected.
    #[error("tls: {0}")]
    Tls(String),
    /// A peer sent something the protocol does not allow; the link is dropped.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The peer refused, or the request was not allowed.
    #[error("refused: {0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] shoal_store::StoreError),
    /// Reading or writing identity files failed (the message names the file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
