//! The components' error type.

use shoal_store::StoreError;

use crate::names::{NAME_MAX, PATH_DEPTH_MAX, PATH_MAX};
use crate::schema::SchemaError;

/// Everything that can go wrong with a component, with variants a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// A project name outside `[A-Za-z0-9_-]+` (Harper's message).
    #[error("Project name can only contain alphanumeric, dash and underscores characters")]
    BadProjectName,
    /// A project name longer than a file system allows.
    #[error("Project name must be at most {NAME_MAX} characters")]
    ProjectNameTooLong,
    /// A file path that is absolute, empty, or has an empty, `.` or `..` segment
    /// (Harper's message).
    #[error("Invalid file path")]
    BadFilePath,
    /// A file path too long or too deep.
    #[error(
        "Invalid file path: at most {PATH_MAX} bytes, {PATH_DEPTH_MAX} folders deep, \
         {NAME_MAX} bytes a name"
    )]
    FilePathTooLong,
    /// add_component for a project that exists.
    #[error("Project already exists")]
    ProjectExists,
    /// A path holds a file where a folder is needed, or the other way round.
    #[error("'{path}' is {found} in component '{component}', not a {wanted}")]
    WrongKind {
        /// The component.
        component: String,
        /// The path inside it (the component's name for the component itself).
        path: String,
        /// What is there: "a file", "a folder", "a symbolic link".
        found: &'static str,
        /// What was needed: "file" or "folder".
        wanted: &'static str,
    },
    /// get_component_file of a file that does not exist.
    #[error("Component file not found '{0}'")]
    FileNotFound(String),
    /// drop_component of a component, file or folder that does not exist.
    #[error("Component '{0}' does not exist")]
    NotFound(String),
    /// A `config.yaml` that does not parse.
    #[error("config.yaml: {0}")]
    Config(String),
    /// A schema file that does not parse or declares tables wrongly.
    #[error("{file}: {error}")]
    Schema {
        /// The schema file, as the config names it.
        file: String,
        /// What is wrong, and where.
        error: SchemaError,
    },
    /// The file system refused; [`ComponentError::is_node_fault`] says whose fault.
    #[error("component file '{path}': {source}")]
    Io {
        /// The file or folder, as the request named it.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Creating a declared table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ComponentError {
    /// Whether a file-system error is the node's (a full disk, a permission) rather than
    /// the client's (a name that cannot be, a folder where a file is expected).
    pub fn is_node_fault(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            ComponentError::Io { source, .. } => !matches!(
                source.kind(),
                NotADirectory
                    | IsADirectory
                    | InvalidFilename
                    | InvalidInput
                    | AlreadyExists
                    | DirectoryNotEmpty
            ),
            _ => false,
        }
    }
}

/// A file-system error on `path`.
pub(crate) fn io(path: &str, source: std::io::Error) -> ComponentError {
    ComponentError::Io {
        path: path.to_owned(),
        source,
    }
}
