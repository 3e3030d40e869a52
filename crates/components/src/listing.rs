//! The components folder as a tree, the shape Harper's get_components answers with.

use std::path::Path;

use serde::Serialize;

use crate::ComponentError;
use crate::error::io;
use crate::names::TEMP_PREFIX;

/// One file or folder of the components tree.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// File or folder name (`components` for the root).
    pub name: String,
    /// Last modified, in milliseconds since the Unix epoch; absent when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
    /// Size in bytes, for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// What a folder holds, sorted by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Entry>>,
    /// For a component (a folder at the top): whether it loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Why this entry could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a component loaded: `healthy`, or `error` and why not.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `healthy` or `error`.
    pub status: &'static str,
    /// `loaded`, or why it did not load.
    pub message: String,
}

/// The tree at `path`, at most `depth` folders down. Symbolic links are listed, not
/// followed: one pointing up would never end.
pub(crate) fn list(path: &Path, name: &str, depth: usize) -> Result<Entry, ComponentError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(name, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let mut entry = Entry {
        name: name.to_owned(),
        mtime: Some(mtime),
        size: None,
        entries: None,
        status: None,
        error: None,
    };
    if !meta.is_dir() {
        entry.size = Some(meta.len());
        return Ok(entry);
    }
    let mut entries = Vec::new();
    if depth > 0 {
        let mut children: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| io(name, e))?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let child_name = child.file_name().to_string_lossy().into_owned();
            entries.push(
                list(&child.path(), &child_name, depth - 1).unwrap_or_else(|e| Entry {
                    name: child_name,
                    mtime: None,
                    size: None,
                    entries: None,
                    status: None,
                    error: Some(e.to_string()),
                }),
            );
        }
    }
    entry.entries = Some(entries);
    Ok(entry)
}
