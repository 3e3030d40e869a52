//! Commands that talk to a running node.

pub(crate) mod op;
pub(crate) mod status;
pub(crate) mod stop;

/// A small runtime for a one-shot command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
