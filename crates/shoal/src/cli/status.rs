//! `shoal status`.

use std::path::Path;

use anyhow::bail;

use crate::runfile::RunFile;

/// Prints the node's state; fails if it is not running or not healthy.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let run = RunFile::read(root)?;
    if !run.alive() {
        bail!("not running (stale run file for pid {})", run.pid);
    }
    let healthy = super::runtime()?.block_on(async {
        let url = format!("http://{}/health", run.http);
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    });
    if !healthy {
        bail!("pid {} is running but /health does not answer", run.pid);
    }
    let mqtt = run
        .mqtt
        .map(|addr| format!(" mqtt={addr}"))
        .unwrap_or_default();
    println!(
        "running name={} pid={} ops={} http={}{mqtt}",
        run.name, run.pid, run.ops, run.http
    );
    Ok(())
}
