//! Replication frames. On the wire each frame is a u32 big-endian length, then one
//! format byte (1), then the frame in MessagePack. See docs/replication.md.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_store::{CopyProgress, CopyRow, LogEntry, SchemaChange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::credentials::KeyParams;
use crate::error::ClusterError;

/// Version 3: the system database link carries relayed messages. Version 2: joins prove
/// credentials, subscriptions carry a version vector, copies and the database list carry
/// drop markers. Nodes of different versions refuse each other's frames rather than
/// misread them.
const FORMAT: u8 = 3;
/// Largest frame accepted. Senders aim far below (`ClusterOptions::batch_bytes`); only a
/// single transaction or record larger than that target makes a frame this side of it,
/// and the store refuses those past its `max_transaction_bytes`, which the node keeps
/// under half of this.
pub const MAX_FRAME_BYTES: usize = 1 << 30;
/// Largest frame taken from a peer that has not authenticated (an `add_node` exchange, the
/// first frame of a connection without a client certificate): those hold names, a CA
/// certificate and nonces, and anyone who can reach the port may send them.
pub(crate) const JOIN_FRAME_BYTES: usize = 64 << 10;
/// A frame's buffer grows by at most this much ahead of the bytes that arrived, so a
/// length prefix alone reserves little memory.
const READ_STEP: usize = 64 << 10;

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
        /// The receiver's version vector: a sender whose log lacks rows it took by full
        /// copy sends a full copy only to receivers that lack them.
        #[serde(default)]
        vv: Option<Vec<(String, u64)>>,
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
    /// Sender → receiver on the system database link: the databases the sender has, and
    /// those it knows were dropped.
    Databases {
        /// Each database with its creation and last drop.
        databases: Vec<DatabaseState>,
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
        /// The sender's table drop markers (table, HLC of its last drop).
        #[serde(default)]
        dropped: Vec<(String, u64)>,
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
    /// Sender → receiver on the system database link: messages relayed to the receiver
    /// (see `relay.rs`), in the order they were relayed.
    Messages {
        /// Each message's opaque bytes.
        messages: Vec<Payload>,
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

/// Opaque bytes, carried as a MessagePack binary (not an array of numbers).
#[derive(Debug, Clone)]
pub(crate) struct Payload(pub(crate) Bytes);

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(Payload(Bytes::from(buf.into_vec())))
    }
}

/// A database as a node knows it: when it was created, when it was last dropped. It
/// exists where its creation is the later of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DatabaseState {
    /// Name.
    pub(crate) name: String,
    /// HLC of its creation, if the node has it.
    pub(crate) created: Option<u64>,
    /// HLC of its last drop, if it was ever dropped.
    pub(crate) dropped: Option<u64>,
}

/// Reads one frame of at most `max` bytes; `None` on a clean end of stream.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Frame>, ClusterError> {
    match read_len(r, max).await? {
        Some(len) => read_body(r, len, None).await.map(Some),
        None => Ok(None),
    }
}

/// Reads a frame's length prefix, refusing one past `max` bytes; `None` on a clean end of
/// stream.
pub(crate) async fn read_len<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<usize>, ClusterError> {
    let len = match r.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len == 0 || len > max {
        return Err(ClusterError::Protocol(format!("frame of {len} bytes")));
    }
    Ok(Some(len))
}

/// Reads the `len` bytes of a frame after its prefix. With `idle`, fails if no byte
/// arrives for that long (a large frame may take longer as a whole).
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    idle: Option<Duration>,
) -> Result<Frame, ClusterError> {
    let mut buf = Vec::new();
    let mut filled = 0;
    while filled < len {
        if filled == buf.len() {
            buf.resize(len.min(filled + READ_STEP.max(filled)), 0);
        }
        let read = r.read(&mut buf[filled..]);
        let n = match idle {
            Some(idle) => tokio::time::timeout(idle, read)
                .await
                .map_err(|_| ClusterError::Protocol("link idle past the timeout".into()))??,
            None => read.await?,
        };
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        filled += n;
    }
    if buf[0] != FORMAT {
        return Err(ClusterError::Protocol(format!(
            "unknown frame format {}",
            buf[0]
        )));
    }
    rmp_serde::from_slice(&buf[1..])
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
        .filter(|&l| l as usize <= MAX_FRAME_BYTES)
        .ok_or_else(|| ClusterError::Protocol("frame too large".into()))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Tells the peer why the connection ends, if it still listens: it ends either way.
pub(crate) async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, reason: &str) {
    let frame = Frame::Refused {
        reason: reason.to_owned(),
    };
    let _ = write(w, &frame).await;
}

/// A writer that fails with `TimedOut` once the peer has accepted no byte for `timeout`
/// while a write waits: a peer that stops reading cannot hold its link (and whatever the
/// link holds) forever. Idle time between writes does not count.
pub(crate) struct Deadline<W> {
    inner: W,
    timeout: Duration,
    stalled: bool,
    sleep: Pin<Box<Sleep>>,
}

impl<W> Deadline<W> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: W, timeout: Duration) -> Self {
        Deadline {
            inner,
            timeout,
            stalled: false,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = false;
            return poll;
        }
        if !self.stalled {
            self.stalled = true;
            self.sleep.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {:?}", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Deadline<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
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
            read(&mut b, MAX_FRAME_BYTES).await.unwrap(),
            Some(Frame::Ack { seq: 42 })
        ));
        a.write_all(&[0, 0, 0, 2, 9, 9]).await.unwrap();
        assert!(read(&mut b, MAX_FRAME_BYTES).await.is_err());
        drop(a);
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(
            read(&mut b, MAX_FRAME_BYTES).await.is_err(),
            "oversized frames are refused before allocation"
        );
    }

    #[tokio::test]
    async fn relayed_messages_travel_as_binaries_in_order() {
        let messages = vec![
            Payload(Bytes::from(vec![0xff; 1000])),
            Payload(Bytes::new()),
            Payload(Bytes::from_static(b"last")),
        ];
        let mut buf = Vec::new();
        write(&mut buf, &Frame::Messages { messages })
            .await
            .unwrap();
        // Binaries: about a byte of framing per payload byte would mean arrays of numbers.
        assert!(buf.len() < 1100, "{} bytes on the wire", buf.len());
        let Some(Frame::Messages { messages }) =
            read(&mut buf.as_slice(), MAX_FRAME_BYTES).await.unwrap()
        else {
            panic!("not the frame written");
        };
        let got: Vec<Bytes> = messages.into_iter().map(|p| p.0).collect();
        assert_eq!(got, [vec![0xff; 1000], vec![], b"last".to_vec()]);
    }

    #[tokio::test]
    async fn a_frame_past_the_reader_bound_is_refused_at_its_prefix() {
        let frame = Frame::Refused {
            reason: "r".repeat(JOIN_FRAME_BYTES),
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write(&mut a, &frame).await.unwrap();
        let err = read(&mut b, JOIN_FRAME_BYTES).await.unwrap_err();
        assert!(err.to_string().contains("frame of"), "{err}");
    }

    #[tokio::test]
    async fn a_large_frame_reads_whole_and_a_short_one_fails() {
        let big = Frame::Refused {
            reason: "r".repeat(3 * READ_STEP + 17),
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 12);
        let writer = tokio::spawn(async move {
            write(&mut a, &big).await.unwrap();
            a
        });
        let Some(Frame::Refused { reason }) = read(&mut b, MAX_FRAME_BYTES).await.unwrap() else {
            panic!("not the frame written");
        };
        assert_eq!(reason.len(), 3 * READ_STEP + 17);
        drop(writer.await.unwrap());
        // A peer that announces a large frame and sends little of it costs a read error,
        // not the announced size.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MAX_FRAME_BYTES as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&[FORMAT, 1, 2]).await.unwrap();
        drop(a);
        assert!(read(&mut b, MAX_FRAME_BYTES).await.is_err());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_writer_out() {
        let timeout = Duration::from_millis(200);
        let (a, _b) = tokio::io::duplex(1024);
        let mut a = Deadline::new(a, timeout);
        let frame = Frame::Refused {
            reason: "x".repeat(4096),
        };
        let started = Instant::now();
        let err = write(&mut a, &frame).await.unwrap_err();
        assert!(err.to_string().contains("read nothing"), "{err}");
        assert!(started.elapsed() >= timeout);
        // Time spent idle between writes does not count against the next one.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut a = Deadline::new(a, timeout);
        write(&mut a, &Frame::Ack { seq: 1 }).await.unwrap();
        tokio::time::sleep(timeout * 2).await;
        write(&mut a, &Frame::Ack { seq: 2 }).await.unwrap();
        assert!(matches!(
            read(&mut b, MAX_FRAME_BYTES).await.unwrap(),
            Some(Frame::Ack { seq: 1 })
        ));
        assert!(matches!(
            read(&mut b, MAX_FRAME_BYTES).await.unwrap(),
            Some(Frame::Ack { seq: 2 })
        ));
    }
}
