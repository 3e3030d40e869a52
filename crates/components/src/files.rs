//! File-system steps that never leave a half-written file behind.

use std::io::{ErrorKind, Write as _};
use std::path::Path;

use crate::ComponentError;
use crate::error::io;

/// What a path holds, without following a symbolic link.
pub(crate) enum Kind {
    Missing,
    Folder,
    File,
    Link,
}

impl Kind {
    /// What is at `path`.
    pub(crate) fn of(path: &Path) -> Result<Kind, ComponentError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Ok(Kind::Link),
            Ok(meta) if meta.is_dir() => Ok(Kind::Folder),
            Ok(_) => Ok(Kind::File),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Kind::Missing),
            Err(e) => Err(io(&path.display().to_string(), e)),
        }
    }

    /// "a file", "a symbolic link", ... for messages.
    pub(crate) fn described(&self) -> &'static str {
        match self {
            Kind::Missing => "nothing",
            Kind::Folder => "a folder",
            Kind::File => "a file",
            Kind::Link => "a symbolic link",
        }
    }
}

/// Writes a new file and makes it durable.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames `from` to `to`, failing if `to` exists (a folder being renamed onto an
/// existing empty folder would otherwise replace it).
pub(crate) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}
