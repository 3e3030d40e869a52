//! `<root>/shoal.pid`: the running node's pid and bound addresses, for `status`, `stop`
//! and `op`. Written once the listeners are bound, removed on clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What a running node tells the CLI about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunFile {
    /// Process id.
    pub(crate) pid: u32,
    /// Node name.
    pub(crate) name: String,
    /// Operations API address.
    pub(crate) ops: SocketAddr,
    /// HTTP address.
    pub(crate) http: SocketAddr,
    /// MQTT address (absent from the files of nodes that predate it).
    #[serde(default)]
    pub(crate) mqtt: Option<SocketAddr>,
}

/// Path of the run file in `root`.
pub(crate) fn path(root: &Path) -> PathBuf {
    root.join("shoal.pid")
}

impl RunFile {
    /// Writes the file (atomically: write then rename).
    pub(crate) fn write(&self, root: &Path) -> anyhow::Result<()> {
        let tmp = root.join("shoal.pid.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, path(root))?;
        Ok(())
    }

    /// Reads the file of `root`.
    pub(crate) fn read(root: &Path) -> anyhow::Result<RunFile> {
        let p = path(root);
        let bytes = std::fs::read(&p).with_context(|| {
            format!(
                "no running node found in {} (no {})",
                root.display(),
                p.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", p.display()))
    }

    /// Whether the process is still alive. A zombie (exited, not yet reaped by its
    /// parent) counts as gone.
    pub(crate) fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid)).is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|state| !state.trim_start().starts_with('Z'))
        })
    }
}
