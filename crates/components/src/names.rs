//! The names a request may give: projects and paths inside them.

use std::path::{Component, Path};

use crate::ComponentError;

/// Longest file or folder name, in bytes (what file systems allow).
pub const NAME_MAX: usize = 255;
/// Longest file path inside a component, in bytes.
pub const PATH_MAX: usize = 1024;
/// Deepest file path inside a component, in folders; also how deep `get_components` looks.
pub const PATH_DEPTH_MAX: usize = 32;
/// Prefix of the temporary names changes go through; never a project or a listed file.
pub(crate) const TEMP_PREFIX: &str = ".shoal-tmp-";

/// A project name as Harper allows it: `[A-Za-z0-9_-]+`, at most [`NAME_MAX`] bytes.
pub(crate) fn project(name: &str) -> Result<&str, ComponentError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if name.is_empty() || !name.bytes().all(allowed) {
        return Err(ComponentError::BadProjectName);
    }
    if name.len() > NAME_MAX {
        return Err(ComponentError::ProjectNameTooLong);
    }
    Ok(name)
}

/// The folders and file name of a path inside a component: relative, `/`-separated,
/// no empty, `.` or `..` segment, no NUL, within [`PATH_MAX`], [`NAME_MAX`] and
/// [`PATH_DEPTH_MAX`].
pub(crate) fn file_path(path: &str) -> Result<Vec<&str>, ComponentError> {
    let segments: Vec<&str> = path.split('/').collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && !s.contains('\0')
            && !s.starts_with(TEMP_PREFIX)
            && matches!(Path::new(s).components().next(), Some(Component::Normal(_)))
            && Path::new(s).components().count() == 1
    };
    if path.is_empty() || !segments.iter().all(plain) {
        return Err(ComponentError::BadFilePath);
    }
    if path.len() > PATH_MAX
        || segments.len() > PATH_DEPTH_MAX
        || segments.iter().any(|s| s.len() > NAME_MAX)
    {
        return Err(ComponentError::FilePathTooLong);
    }
    Ok(segments)
}
