//! Components: Harper-style application folders under `<root>/components/<name>/`, each
//! with a `config.yaml` (`rest: true`, `graphqlSchema: {files: schema.graphql}`) and a
//! GraphQL schema declaring tables. Declared tables are created if missing; exported
//! ones are served over REST at `/<export name>/`. Schema-only: no code is run.

mod graphql;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use serde::Deserialize;
use shoal_store::{Store, StoreError, TableSpec, Write};

use crate::error::ApiError;

/// The `config.yaml` a new component starts with.
const DEFAULT_CONFIG: &str = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";

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

/// The components folder and the REST exports its schemas declare.
pub struct Components {
    dir: PathBuf,
    exports: RwLock<HashMap<String, (String, String)>>,
}

impl Components {
    /// Components live in `dir` (created if missing).
    pub fn new(dir: PathBuf) -> Self {
        Components {
            dir,
            exports: RwLock::new(HashMap::new()),
        }
    }

    /// The (database, table) exported under `name`.
    pub(crate) fn export(&self, name: &str) -> Option<(String, String)> {
        self.exports
            .read()
            .expect("exports lock")
            .get(name)
            .cloned()
    }

    /// Reads every component, creates the tables they declare and publishes their exports.
    pub async fn load(&self, store: &Store) -> Result<(), ApiError> {
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut exports = HashMap::new();
        for name in self.names()? {
            for decl in self.declarations(&name)? {
                create_table(store, &decl).await?;
                if let Some(export) = &decl.export {
                    exports.insert(export.clone(), (decl.database.clone(), decl.table.clone()));
                }
            }
        }
        *self.exports.write().expect("exports lock") = exports;
        Ok(())
    }

    /// Component names, sorted.
    pub(crate) fn names(&self) -> Result<Vec<String>, ApiError> {
        let mut names = Vec::new();
        if self.dir.exists() {
            for entry in std::fs::read_dir(&self.dir).map_err(io)? {
                let entry = entry.map_err(io)?;
                if entry.file_type().map_err(io)?.is_dir() {
                    names.extend(entry.file_name().to_str().map(str::to_owned));
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The tables a component declares, if its config turns REST and a schema on.
    fn declarations(&self, name: &str) -> Result<Vec<graphql::TableDecl>, ApiError> {
        let folder = self.dir.join(name);
        let config_path = folder.join("config.yaml");
        let config: ComponentConfig = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(io)?;
            serde_saphyr::from_str(&text).map_err(|e| {
                ApiError::bad_request(format!("component '{name}': config.yaml: {e}"))
            })?
        } else {
            ComponentConfig::default()
        };
        let files = match config.graphql_schema.map(|s| s.files) {
            None => Vec::new(),
            Some(OneOrMany::One(f)) => vec![f],
            Some(OneOrMany::Many(list)) => list,
        };
        let rest = !matches!(config.rest, None | Some(serde_json::Value::Bool(false)));
        let mut decls = Vec::new();
        for file in files {
            let path = folder.join(relative(&file)?);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let mut parsed = graphql::parse_schema(&text)
                .map_err(|e| ApiError::bad_request(format!("component '{name}': {file}: {e}")))?;
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
    pub(crate) fn add(&self, name: &str) -> Result<(), ApiError> {
        let folder = self.dir.join(relative(name)?);
        if folder.exists() {
            return Err(ApiError::bad_request(format!(
                "Project '{name}' already exists"
            )));
        }
        std::fs::create_dir_all(&folder).map_err(io)?;
        std::fs::write(folder.join("config.yaml"), DEFAULT_CONFIG).map_err(io)?;
        std::fs::write(folder.join("schema.graphql"), "").map_err(io)?;
        Ok(())
    }

    /// Writes one file of a component (creating the component if needed).
    pub(crate) fn set_file(&self, name: &str, file: &str, payload: &str) -> Result<(), ApiError> {
        let path = self.dir.join(relative(name)?).join(relative(file)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(path, payload).map_err(io)
    }

    /// Reads one file of a component.
    pub(crate) fn get_file(&self, name: &str, file: &str) -> Result<String, ApiError> {
        let path = self.dir.join(relative(name)?).join(relative(file)?);
        std::fs::read_to_string(&path).map_err(|_| {
            ApiError::not_found(format!("Component file '{name}/{file}' does not exist"))
        })
    }

    /// Removes a component, or one of its files.
    pub(crate) fn remove(&self, name: &str, file: Option<&str>) -> Result<(), ApiError> {
        let mut path = self.dir.join(relative(name)?);
        if let Some(file) = file {
            path = path.join(relative(file)?);
        }
        if !path.exists() {
            return Err(ApiError::not_found(format!(
                "Component '{name}' does not exist"
            )));
        }
        if path.is_dir() {
            std::fs::remove_dir_all(path).map_err(io)
        } else {
            std::fs::remove_file(path).map_err(io)
        }
    }

    /// The folder tree, as Harper's get_components shows it.
    pub(crate) fn tree(&self) -> Result<serde_json::Value, ApiError> {
        tree(&self.dir, "components")
    }
}

fn tree(path: &Path, name: &str) -> Result<serde_json::Value, ApiError> {
    let meta = std::fs::metadata(path).map_err(io)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    if !meta.is_dir() {
        return Ok(serde_json::json!({"name": name, "mtime": mtime, "size": meta.len()}));
    }
    let mut entries = Vec::new();
    let mut children: Vec<_> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .collect();
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let child_name = child.file_name().to_string_lossy().into_owned();
        entries.push(tree(&child.path(), &child_name)?);
    }
    Ok(serde_json::json!({"name": name, "mtime": mtime, "entries": entries}))
}

/// A path inside a component: relative, no `..`.
fn relative(path: &str) -> Result<&Path, ApiError> {
    let p = Path::new(path);
    if path.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApiError::bad_request(format!(
            "'{path}' must be a relative path inside the component"
        )));
    }
    Ok(p)
}

fn io(e: std::io::Error) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("component files: {e}"),
    }
}

/// Creates a declared table (and its database) unless it exists.
async fn create_table(store: &Store, decl: &graphql::TableDecl) -> Result<(), ApiError> {
    let db = crate::databases::ensure(store, &decl.database).await?;
    if db.catalog().tables.contains_key(&decl.table) {
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
    match db.write(Write::CreateTable(spec), None).await {
        Ok(_) | Err(StoreError::TableExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
