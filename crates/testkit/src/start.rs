//! Starting single nodes of the `shoal` binary the running test was built with.

use std::path::{Path, PathBuf};

use crate::{Node, NodeOptions};

/// The `shoal` binary cargo built alongside the running test.
///
/// Cargo puts test executables in `target/<profile>/deps/` and the package's binaries one
/// level up (where `CARGO_BIN_EXE_shoal` points, a variable only the test crate itself
/// sees at compile time), so the path is found from the test executable's own.
pub fn shoal_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()));
    profile_dir.join(format!("shoal{}", std::env::consts::EXE_SUFFIX))
}

/// Starts a fresh `shoal` node named `name`.
pub async fn start(name: &str) -> anyhow::Result<Node> {
    start_with(name, &[]).await
}

/// Starts a fresh `shoal` node with extra command-line arguments.
pub async fn start_with(name: &str, args: &[&str]) -> anyhow::Result<Node> {
    let mut opts = NodeOptions::new(name);
    opts.args = args.iter().map(|a| (*a).to_owned()).collect();
    Node::start(&shoal_bin(), opts).await
}
