//! Components: Harper-style application folders under `<root>/components/<name>/`, each
//! with a `config.yaml` (`rest: true`, `graphqlSchema: {files: schema.graphql}`) and a
//! GraphQL schema declaring tables. Declared tables are created if missing; exported
//! ones are served over REST at `/<export name>/`. Schema-only: no code is run.
//!
//! The folder is changed only through validated names (Harper's rule for projects; plain
//! relative paths for files) and never left half-changed: a file is written to a
//! temporary name and renamed into place, folders are created only for a write that can
//! succeed and removed again if it fails, and a project is added or dropped by one
//! rename. A component that fails to load is skipped and reported (in the log and in
//! `get_components`); it never stops the others, or the node, from starting.

mod graphql;

use std::collections::HashMap;
use std::io::{ErrorKind, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_store::{Store, StoreError, TableSpec};

use crate::error::ApiError;

/// The `config.yaml` a new component starts with.
const DEFAULT_CONFIG: &str = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";
/// Longest file or folder name, in bytes (what file systems allow).
const NAME_MAX: usize = 255;
/// Longest file path inside a component, in bytes.
const PATH_MAX: usize = 1024;
/// Deepest file path inside a component, in folders; also how deep `get_components` looks.
const DEPTH_MAX: usize = 32;
/// Prefix of the temporary names changes go through; never a project or a listed file.
const TEMP_PREFIX: &str = ".shoal-tmp-";
/// Harper's message for a project name outside `[A-Za-z0-9_-]+`.
const BAD_PROJECT_NAME: &str =
    "Project name can only contain alphanumeric, dash and underscores characters";
/// Harper's message for a file path it refuses.
const BAD_FILE_PATH: &str = "Invalid file path";

/// A component's `config.yaml`, the parts Shoal reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComponentConfig {
    /// `rest: true` or `rest: {…}` serves the exported tables over REST.
    rest: Option<serde_json::Value>,
    /// Where its schema files are.
    graphql_schema: Option<SchemaFiles>,
}

/// `graphqlSchema: {files: ...}`: one file or a list.
#[derive(Debug, Deserialize)]
struct SchemaFiles {
    files: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The components folder, the REST exports its schemas declare, and why the components
/// that failed to load did.
pub struct Components {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
    /// Serialises changes to the folder and the reloads that follow them.
    changing: tokio::sync::Mutex<()>,
}

impl Components {
    /// Components live in `dir` (created if missing).
    pub fn new(dir: PathBuf) -> Self {
        Components {
            dir,
            loaded: RwLock::new(Loaded::default()),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The (database, table) exported under `name`.
    pub(crate) fn export(&self, name: &str) -> Option<(String, String)> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .exports
            .get(name)
            .cloned()
    }

    /// Reads every component, creates the tables they declare and publishes their
    /// exports. A component that fails is logged, reported by `get_components` and
    /// skipped; the others load regardless.
    pub async fn load(&self, store: &Store) {
        let _changing = self.changing.lock().await;
        self.reload(store).await;
    }

    async fn reload(&self, store: &Store) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "components folder unusable");
        }
        let mut exports = HashMap::new();
        let mut failures = HashMap::new();
        for name in self.names() {
            match self.load_one(store, &name).await {
                Ok(declared) => exports.extend(declared),
                Err(e) => {
                    tracing::warn!(component = %name, error = %e.message, "component not loaded");
                    failures.insert(name, e.message);
                }
            }
        }
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded { exports, failures };
    }

    /// Creates the tables one component declares; its exports.
    async fn load_one(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<Vec<(String, (String, String))>, ApiError> {
        let mut exports = Vec::new();
        for decl in self.declarations(name)? {
            create_table(store, &decl).await?;
            if let Some(export) = &decl.export {
                exports.push((export.clone(), (decl.database.clone(), decl.table.clone())));
            }
        }
        Ok(exports)
    }

    /// Component names (folders named as projects may be), sorted.
    fn names(&self) -> Vec<String> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "listing components failed");
                return Vec::new();
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| project(name).is_ok())
            .collect();
        names.sort();
        names
    }

    /// The tables a component declares, if its config turns REST and a schema on.
    fn declarations(&self, name: &str) -> Result<Vec<graphql::TableDecl>, ApiError> {
        let folder = self.dir.join(name);
        let config_path = folder.join("config.yaml");
        let config: ComponentConfig = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_saphyr::from_str(&text)
                .map_err(|e| ApiError::bad_request(format!("config.yaml: {e}")))?,
            Err(e) if e.kind() == ErrorKind::NotFound => ComponentConfig::default(),
            Err(e) => return Err(io("config.yaml", e)),
        };
        let files = match config.graphql_schema.map(|s| s.files) {
            None => Vec::new(),
            Some(OneOrMany::One(f)) => vec![f],
            Some(OneOrMany::Many(list)) => list,
        };
        let rest = !matches!(config.rest, None | Some(serde_json::Value::Bool(false)));
        let mut decls = Vec::new();
        for file in files {
            let path = folder.join(file_path(&file)?.join("/"));
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&file, e)),
            };
            let mut parsed = graphql::parse_schema(&text)
                .map_err(|e| ApiError::bad_request(format!("{file}: {e}")))?;
            if !rest {
                for decl in &mut parsed {
                    decl.export = None;
                }
            }
            decls.extend(parsed);
        }
        Ok(decls)
    }

    /// Creates a component with the default config and an empty schema.
    pub(crate) async fn add(&self, store: &Store, name: &str) -> Result<(), ApiError> {
        let name = project(name)?;
        let _changing = self.changing.lock().await;
        let folder = self.dir.join(name);
        if std::fs::symlink_metadata(&folder).is_ok() {
            return Err(ApiError::bad_request("Project already exists"));
        }
        // Built under a temporary name and renamed into place, so it appears whole.
        let temp = self.temp_path(name);
        let built = (|| {
            std::fs::create_dir_all(&temp)?;
            write_synced(&temp.join("config.yaml"), DEFAULT_CONFIG.as_bytes())?;
            write_synced(&temp.join("schema.graphql"), b"")?;
            rename_new(&temp, &folder)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(match e.kind() {
                ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty => {
                    ApiError::bad_request("Project already exists")
                }
                _ => io(name, e),
            });
        }
        self.reload(store).await;
        Ok(())
    }

    /// Writes one file of a component, or makes a folder when `payload` is `None`
    /// (creating the component and the folders above if needed).
    pub(crate) async fn set_file(
        &self,
        store: &Store,
        name: &str,
        file: &str,
        payload: Option<&str>,
    ) -> Result<(), ApiError> {
        let name = project(name)?;
        let segments = file_path(file)?;
        let _changing = self.changing.lock().await;
        let (leaf, parents) = segments.split_last().ok_or_else(bad_path)?;
        // Every folder on the way must be a folder or not exist yet; the target must be a
        // file (or, for a folder, a folder) or not exist yet. Checked before anything is
        // created, so a refused request changes nothing.
        let mut dir = self.dir.clone();
        let mut missing = Vec::new();
        for (i, segment) in std::iter::once(name)
            .chain(parents.iter().copied())
            .enumerate()
        {
            dir.push(segment);
            // Below a missing folder everything is missing.
            let found = if missing.is_empty() {
                kind(&dir)?
            } else {
                Kind::Missing
            };
            match found {
                Kind::Missing => missing.push(dir.clone()),
                Kind::Folder => {}
                Kind::File | Kind::Link => {
                    let shown = if i == 0 {
                        name.to_owned()
                    } else {
                        parents[..i].join("/")
                    };
                    return Err(ApiError::bad_request(format!(
                        "'{shown}' is {} in component '{name}', not a folder",
                        found.described()
                    )));
                }
            }
        }
        let target = dir.join(leaf);
        let existing = if missing.is_empty() {
            kind(&target)?
        } else {
            Kind::Missing
        };
        match (existing, payload) {
            (Kind::Folder, Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "'{file}' is a folder in component '{name}', not a file"
                )));
            }
            (found @ Kind::Link, Some(_)) | (found @ (Kind::File | Kind::Link), None) => {
                let wanted = if payload.is_some() { "file" } else { "folder" };
                return Err(ApiError::bad_request(format!(
                    "'{file}' is {} in component '{name}', not a {wanted}",
                    found.described()
                )));
            }
            (Kind::Folder, None) => return Ok(()),
            (Kind::Missing | Kind::File, _) => {}
        }
        let mut created = Vec::new();
        let written = (|| {
            for folder in &missing {
                std::fs::create_dir(folder)?;
                created.push(folder);
            }
            match payload {
                Some(payload) => {
                    let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::now_v7()));
                    let result = write_synced(&temp, payload.as_bytes())
                        .and_then(|()| std::fs::rename(&temp, &target));
                    if result.is_err() {
                        let _ = std::fs::remove_file(&temp);
                    }
                    result
                }
                None => std::fs::create_dir(&target),
            }
        })();
        if let Err(e) = written {
            for folder in created.iter().rev() {
                let _ = std::fs::remove_dir(folder);
            }
            return Err(io(file, e));
        }
        self.reload(store).await;
        Ok(())
    }

    /// Reads one file of a component.
    pub(crate) fn get_file(&self, name: &str, file: &str) -> Result<String, ApiError> {
        let segments = file_path(file)?;
        let path = self.dir.join(project(name)?).join(segments.join("/"));
        std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::NotADirectory => {
                ApiError::not_found(format!("Component file not found '{name}/{file}'"))
            }
            _ => io(file, e),
        })
    }

    /// Removes a component, or one of its files or folders.
    pub(crate) async fn remove(
        &self,
        store: &Store,
        name: &str,
        file: Option<&str>,
    ) -> Result<(), ApiError> {
        let name = project(name)?;
        let mut path = self.dir.join(name);
        if let Some(file) = file {
            path.push(file_path(file)?.join("/"));
        }
        let _changing = self.changing.lock().await;
        let shown = file.map_or_else(|| name.to_owned(), |f| format!("{name}/{f}"));
        let removed = match kind(&path)? {
            Kind::Missing => {
                return Err(ApiError::not_found(format!(
                    "Component '{shown}' does not exist"
                )));
            }
            Kind::File | Kind::Link => std::fs::remove_file(&path),
            // Moved aside in one step, then deleted: a failure part-way leaves only a
            // temporary folder, never half a component.
            Kind::Folder => {
                let temp = self.temp_path(name);
                std::fs::rename(&path, &temp).and_then(|()| std::fs::remove_dir_all(&temp))
            }
        };
        removed.map_err(|e| io(&shown, e))?;
        self.reload(store).await;
        Ok(())
    }

    /// The folder tree, as Harper's get_components shows it, with each component's
    /// `status`: `healthy`, or `error` and why it did not load.
    pub(crate) fn tree(&self) -> Result<Value, ApiError> {
        let mut tree = tree(&self.dir, "components", DEPTH_MAX)?;
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(entries) = tree.get_mut("entries").and_then(Value::as_array_mut) {
            for entry in entries {
                let Some(name) = entry["name"].as_str().map(str::to_owned) else {
                    continue;
                };
                if entry.get("entries").is_none() || project(&name).is_err() {
                    continue;
                }
                entry["status"] = match loaded.failures.get(&name) {
                    Some(error) => json!({"status": "error", "message": error}),
                    None => json!({"status": "healthy", "message": "loaded"}),
                };
            }
        }
        Ok(tree)
    }

    /// A fresh temporary path in the components folder.
    fn temp_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{TEMP_PREFIX}{}-{name}", uuid::Uuid::now_v7()))
    }
}

/// What the last load found.
#[derive(Default)]
struct Loaded {
    /// (database, table) by export name.
    exports: HashMap<String, (String, String)>,
    /// Why each component that failed to load did, by name.
    failures: HashMap<String, String>,
}

/// What a path holds, without following a symbolic link.
enum Kind {
    Missing,
    Folder,
    File,
    Link,
}

impl Kind {
    /// "a file", "a symbolic link", ... for messages.
    fn described(&self) -> &'static str {
        match self {
            Kind::Missing => "nothing",
            Kind::Folder => "a folder",
            Kind::File => "a file",
            Kind::Link => "a symbolic link",
        }
    }
}

fn kind(path: &Path) -> Result<Kind, ApiError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(Kind::Link),
        Ok(meta) if meta.is_dir() => Ok(Kind::Folder),
        Ok(_) => Ok(Kind::File),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Kind::Missing),
        Err(e) => Err(io(&path.display().to_string(), e)),
    }
}

/// Writes a new file and makes it durable.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames `from` to `to`, failing if `to` exists (a folder being renamed onto an
/// existing empty folder would otherwise replace it).
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

fn tree(path: &Path, name: &str, depth: usize) -> Result<Value, ApiError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(name, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    // Symbolic links are listed, not followed: one pointing up would never end.
    if !meta.is_dir() {
        return Ok(json!({"name": name, "mtime": mtime, "size": meta.len()}));
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
                tree(&child.path(), &child_name, depth - 1)
                    .unwrap_or_else(|e| json!({"name": child_name, "error": e.message})),
            );
        }
    }
    Ok(json!({"name": name, "mtime": mtime, "entries": entries}))
}

/// A project name as Harper allows it: `[A-Za-z0-9_-]+`, at most [`NAME_MAX`] bytes.
fn project(name: &str) -> Result<&str, ApiError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if name.is_empty() || !name.bytes().all(allowed) {
        return Err(ApiError::bad_request(BAD_PROJECT_NAME));
    }
    if name.len() > NAME_MAX {
        return Err(ApiError::bad_request(format!(
            "Project name must be at most {NAME_MAX} characters"
        )));
    }
    Ok(name)
}

/// The folders and file name of a path inside a component: relative, `/`-separated,
/// no empty, `.` or `..` segment, no NUL, within [`PATH_MAX`], [`NAME_MAX`] and
/// [`DEPTH_MAX`].
fn file_path(path: &str) -> Result<Vec<&str>, ApiError> {
    let segments: Vec<&str> = path.split('/').collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && !s.contains('\0')
            && !s.starts_with(TEMP_PREFIX)
            && matches!(Path::new(s).components().next(), Some(Component::Normal(_)))
            && Path::new(s).components().count() == 1
    };
    if path.is_empty() || !segments.iter().all(plain) {
        return Err(bad_path());
    }
    if path.len() > PATH_MAX
        || segments.len() > DEPTH_MAX
        || segments.iter().any(|s| s.len() > NAME_MAX)
    {
        return Err(ApiError::bad_request(format!(
            "{BAD_FILE_PATH}: at most {PATH_MAX} bytes, {DEPTH_MAX} folders deep, \
             {NAME_MAX} bytes a name"
        )));
    }
    Ok(segments)
}

fn bad_path() -> ApiError {
    ApiError::bad_request(BAD_FILE_PATH)
}

/// A file-system error on `what`: those a name can cause are the client's (400), the
/// rest the node's (500).
fn io(what: &str, e: std::io::Error) -> ApiError {
    let status = match e.kind() {
        ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::InvalidFilename
        | ErrorKind::InvalidInput
        | ErrorKind::AlreadyExists
        | ErrorKind::DirectoryNotEmpty => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(path = %what, error = %e, "component files");
    }
    ApiError {
        status,
        message: format!("component file '{what}': {e}"),
    }
}

/// Creates a declared table (and its database) unless it exists.
async fn create_table(store: &Store, decl: &graphql::TableDecl) -> Result<(), ApiError> {
    let exists = store
        .database(&decl.database)
        .is_ok_and(|db| db.catalog().tables.contains_key(&decl.table));
    if exists {
        return Ok(());
    }
    let spec = TableSpec {
        name: decl.table.clone(),
        primary_key: decl.primary_key.clone(),
        attributes: decl
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.indexed))
            .collect(),
        replicate: None,
    };
    match crate::databases::create_table(store, &decl.database, spec).await {
        Ok(()) | Err(StoreError::TableExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
