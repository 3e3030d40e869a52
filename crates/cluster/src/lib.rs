//! Replication between Shoal nodes: multi-master, asynchronous, in commit order.
//!
//! Every node is a full copy. Each node keeps one receiving link per (peer, database):
//! it dials the peer's replication port over mutual TLS and subscribes from its cursor;
//! the peer streams its transaction log in commit order (or a consistent snapshot first,
//! when its log no longer reaches back to the cursor), leaving out entries that
//! originated at the receiver. The receiver applies each batch with last-writer-wins,
//! advancing its cursor and version vector in the same commit (see `shoal_store`'s apply
//! path), so a crash anywhere loses nothing and applies nothing twice. Entries keep their
//! origin when relayed, so a partial mesh converges.
//!
//! Membership (`system.hdb_nodes`) and trust (`system.hdb_certificate`) live in the
//! replicated system database: joining any member joins the cluster.
//!
//! This crate uses the store only through its narrow replication API (senders follow the
//! log with `Database::follow_batches`; receivers read cursors from snapshots and apply
//! with `Write::Apply` / `Write::Merge`) and plain writes to its own system tables; it
//! knows nothing of HTTP, nor of how users are kept: a join checks passwords through
//! [`Credentials`], which the `shoal` binary implements over `shoal_auth`'s password
//! proofs.

mod cluster;
mod credentials;
mod error;
mod gate;
pub mod identity;
mod join;
mod nodes;
mod proto;
mod receiver;
mod relay;
mod sender;
mod status;
pub mod tls;

pub use cluster::{Cluster, ClusterOptions};
pub use credentials::{Challenge, Credentials, DerivedKey, KeyParams, ProofKey};
pub use error::ClusterError;
pub use nodes::{CERTIFICATES_TABLE, NODES_TABLE, NodeRecord, PINS_TABLE};
pub use proto::MAX_FRAME_BYTES;
pub use relay::{Relayed, RelayedMessages};
pub use status::LinkStatus;
