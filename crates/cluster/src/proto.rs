//! Replication frames. On the wire each frame is a u32 big-endian length, then one
//! format byte (1), then the frame in MessagePack. See docs/replication.md.

use serde::{Deserialize, Serialize};
use shoal_auth::proof::KeyParams;
use shoal_store::{CopyProgress, CopyRow, LogEntry, SchemaChange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ClusterError;

const FORMAT: u8 = 1;
/// Largest frame accepted; a sender keeps its batches well below.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A message on a replication connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// Receiver → sender, first frame: send me `database` from after `cursor`.
    Subscribe {
        /// The receiving node.
        node: String,
        /// Database wanted.
        database: String,
        /// Last of the sender's sequences the receiver holds.
        cursor: u64,
        /// An unfinished full copy to resume.
        copy: Option<CopyProgress>,
    },
    /// Joining node → existing node, first frame of `add_node` (see `join.rs`).
    Join {
        /// Admin user of the existing node, whose password the joiner proves it knows.
        username: String,
        /// The joining node's name.
        node: String,
        /// The joining node's CA certificate (PEM).
        ca_pem: String,
        /// The joining node's replication address.
        url: String,
        /// A fresh random value of the joiner's, bound into the proofs.
        nonce: Vec<u8>,
    },
    /// Existing node → joining node: who it is, and what to prove the password with.
    JoinChallenge {
        /// The existing node's name.
        node: String,
        /// Its CA certificate (PEM).
        ca_pem: String,
        /// Its replication address.
        url: String,
        /// The parameters to derive the proof key with.
        params: KeyParams,
        /// A fresh random value of the existing node's, bound into the proofs.
        nonce: Vec<u8>,
    },
    /// Joining node → existing node: proof of the password, bound to this connection.
    JoinProof {
        /// HMAC over the join's transcript.
        proof: Vec<u8>,
    },
    /// Existing node → joining node: welcome, with its proof that it holds the password's hash.
    Joined {
        /// HMAC over the join's transcript.
        proof: Vec<u8>,
    },
    /// Either side: no, and why; the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// Sender → receiver on the system database link: the databases the sender has.
    Databases {
        /// Names.
        names: Vec<String>,
    },
    /// Sender → receiver: log entries in commit order.
    Entries {
        /// (sender's sequence, entry).
        entries: Vec<(u64, LogEntry)>,
        /// The sender's sequence this frame covers up to (entries it skipped included).
        up_to: u64,
        /// The sender's last sequence, for lag.
        head: u64,
    },
    /// Sender → receiver: a full copy begins (or resumes) at this point.
    CopyStart {
        /// Where the copy stands.
        progress: CopyProgress,
        /// Tables to create before rows arrive.
        tables: Vec<SchemaChange>,
    },
    /// Sender → receiver: rows of one table, in key order.
    CopyRows {
        /// Table.
        table: String,
        /// Rows.
        rows: Vec<CopyRow>,
        /// Where the copy stands after these rows.
        progress: CopyProgress,
    },
    /// Sender → receiver: the copy is complete; the log follows from `progress.seq`.
    CopyDone {
        /// Final progress.
        progress: CopyProgress,
    },
    /// Receiver → sender: applied and durable up to this sequence.
    Ack {
        /// Sender's sequence.
        seq: u64,
    },
    /// Keep-alive, with the sender's clock for latency.
    Ping {
        /// Milliseconds since the epoch when sent.
        sent_ms: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's `sent_ms`.
        sent_ms: u64,
    },
}

/// Reads one frame; `None` on a clean end of stream.
pub(crate) async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, ClusterError> {
    let len = match r.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len == 0 || len > MAX_FRAME {
        return Err(ClusterError::Protocol(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await?;
    if buf[0] != FORMAT {
        return Err(ClusterError::Protocol(format!(
            "unknown frame format {}",
            buf[0]
        )));
    }
    rmp_serde::from_slice(&buf[1..])
        .map(Some)
        .map_err(|e| ClusterError::Protocol(format!("undecodable frame: {e}")))
}

/// Writes one frame and flushes it.
pub(crate) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
) -> Result<(), ClusterError> {
    let mut buf = vec![0, 0, 0, 0, FORMAT];
    rmp_serde::encode::write_named(&mut buf, frame)
        .map_err(|e| ClusterError::Protocol(format!("unencodable frame: {e}")))?;
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| ClusterError::Protocol("frame too large".into()))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let frame = Frame::Ack { seq: 42 };
        write(&mut a, &frame).await.unwrap();
        assert!(matches!(
            read(&mut b).await.unwrap(),
            Some(Frame::Ack { seq: 42 })
        ));
        a.write_all(&[0, 0, 0, 2, 9, 9]).await.unwrap();
        assert!(read(&mut b).await.is_err());
        drop(a);
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(
            read(&mut b).await.is_err(),
            "oversized frames are refused before allocation"
        );
    }
}
