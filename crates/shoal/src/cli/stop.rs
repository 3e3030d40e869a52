//! `shoal stop`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::runfile::RunFile;

/// How long the node gets to finish in-flight work.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends SIGTERM and waits for the process to exit.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let run = RunFile::read(root)?;
    if !run.alive() {
        bail!("not running (stale run file for pid {})", run.pid);
    }
    let pid = Pid::from_raw(i32::try_from(run.pid).context("pid")?);
    kill(pid, Signal::SIGTERM).context("sending SIGTERM")?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while run.alive() {
        if Instant::now() > deadline {
            bail!("pid {} did not exit within {STOP_TIMEOUT:?}", run.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped pid {}", run.pid);
    Ok(())
}
