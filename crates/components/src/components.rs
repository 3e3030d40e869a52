//! [`Components`]: the components folder, changed whole or not at all, and what its
//! schemas declared the last time it was loaded.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock};

use shoal_store::{StoreError, TableSpec};

use crate::ComponentError;
use crate::config::{DEFAULT_CONFIG, declarations};
use crate::error::io;
use crate::files::{Kind, rename_new, write_synced};
use crate::listing::{Entry, Status, list};
use crate::names::{PATH_DEPTH_MAX, TEMP_PREFIX, file_path, project};
use crate::schema::TableDecl;

/// Creates the tables components declare. The server implements it, so a new table is
/// made (and announced to the cluster) the way create_table makes one.
pub trait Tables: Sync {
    /// Creates the table `spec` in `database` (and the database) unless it exists.
    fn ensure(
        &self,
        database: &str,
        spec: TableSpec,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The components folder, the REST exports its schemas declare, and why the components
/// that failed to load did.
pub struct Components {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
    /// Serialises changes to the folder and the reloads that follow them.
    changing: tokio::sync::Mutex<()>,
}

/// What the last load found.
#[derive(Default)]
struct Loaded {
    /// (database, table) by export name.
    exports: HashMap<String, (String, String)>,
    /// Why each component that failed to load did, by name.
    failures: HashMap<String, String>,
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
    pub fn export(&self, name: &str) -> Option<(String, String)> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .exports
            .get(name)
            .cloned()
    }

    /// Reads every component, creates the tables they declare and publishes their
    /// exports. A component that fails is logged, reported by [`Components::tree`] and
    /// skipped; the others load regardless.
    pub async fn load(&self, tables: &impl Tables) {
        let _changing = self.changing.lock().await;
        self.reload(tables).await;
    }

    async fn reload(&self, tables: &impl Tables) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "components folder unusable");
        }
        let mut exports = HashMap::new();
        let mut failures = HashMap::new();
        for name in self.names() {
            match self.load_one(tables, &name).await {
                Ok(declared) => exports.extend(declared),
                Err(e) => {
                    tracing::warn!(component = %name, error = %e, "component not loaded");
                    failures.insert(name, e.to_string());
                }
            }
        }
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded { exports, failures };
    }

    /// Creates the tables one component declares; its exports.
    async fn load_one(
        &self,
        tables: &impl Tables,
        name: &str,
    ) -> Result<Vec<(String, (String, String))>, ComponentError> {
        let mut exports = Vec::new();
        for decl in declarations(&self.dir.join(name))? {
            tables.ensure(&decl.database, spec(&decl)).await?;
            if let Some(export) = decl.export {
                exports.push((export, (decl.database, decl.table)));
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

    /// Creates a component with the default config and an empty schema.
    pub async fn add(&self, tables: &impl Tables, name: &str) -> Result<(), ComponentError> {
        let name = project(name)?;
        let _changing = self.changing.lock().await;
        let folder = self.dir.join(name);
        if std::fs::symlink_metadata(&folder).is_ok() {
            return Err(ComponentError::ProjectExists);
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
                    ComponentError::ProjectExists
                }
                _ => io(name, e),
            });
        }
        self.reload(tables).await;
        Ok(())
    }

    /// Writes one file of a component, or makes a folder when `payload` is `None`
    /// (creating the component and the folders above if needed).
    pub async fn set_file(
        &self,
        tables: &impl Tables,
        name: &str,
        file: &str,
        payload: Option<&str>,
    ) -> Result<(), ComponentError> {
        let name = project(name)?;
        let segments = file_path(file)?;
        let _changing = self.changing.lock().await;
        let (leaf, parents) = segments.split_last().ok_or(ComponentError::BadFilePath)?;
        let wrong = |path: String, found: &Kind, wanted| ComponentError::WrongKind {
            component: name.to_owned(),
            path,
            found: found.described(),
            wanted,
        };
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
                Kind::of(&dir)?
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
                    return Err(wrong(shown, &found, "folder"));
                }
            }
        }
        let target = dir.join(leaf);
        let existing = if missing.is_empty() {
            Kind::of(&target)?
        } else {
            Kind::Missing
        };
        match (&existing, payload) {
            (Kind::Folder, Some(_)) | (Kind::Link, Some(_)) => {
                return Err(wrong(file.to_owned(), &existing, "file"));
            }
            (Kind::File | Kind::Link, None) => {
                return Err(wrong(file.to_owned(), &existing, "folder"));
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
        self.reload(tables).await;
        Ok(())
    }

    /// Reads one file of a component.
    pub fn get_file(&self, name: &str, file: &str) -> Result<String, ComponentError> {
        let segments = file_path(file)?;
        let path = self.dir.join(project(name)?).join(segments.join("/"));
        std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::NotADirectory => {
                ComponentError::FileNotFound(format!("{name}/{file}"))
            }
            _ => io(file, e),
        })
    }

    /// Removes a component, or one of its files or folders.
    pub async fn remove(
        &self,
        tables: &impl Tables,
        name: &str,
        file: Option<&str>,
    ) -> Result<(), ComponentError> {
        let name = project(name)?;
        let mut path = self.dir.join(name);
        if let Some(file) = file {
            path.push(file_path(file)?.join("/"));
        }
        let _changing = self.changing.lock().await;
        let shown = file.map_or_else(|| name.to_owned(), |f| format!("{name}/{f}"));
        let removed = match Kind::of(&path)? {
            Kind::Missing => return Err(ComponentError::NotFound(shown)),
            Kind::File | Kind::Link => std::fs::remove_file(&path),
            // Moved aside in one step, then deleted: a failure part-way leaves only a
            // temporary folder, never half a component.
            Kind::Folder => {
                let temp = self.temp_path(name);
                std::fs::rename(&path, &temp).and_then(|()| std::fs::remove_dir_all(&temp))
            }
        };
        removed.map_err(|e| io(&shown, e))?;
        self.reload(tables).await;
        Ok(())
    }

    /// The folder tree, as Harper's get_components shows it, with each component's
    /// `status`: `healthy`, or `error` and why it did not load.
    pub fn tree(&self) -> Result<Entry, ComponentError> {
        let mut tree = list(&self.dir, "components", PATH_DEPTH_MAX)?;
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        for entry in tree.entries.iter_mut().flatten() {
            if entry.entries.is_none() || project(&entry.name).is_err() {
                continue;
            }
            entry.status = Some(match loaded.failures.get(&entry.name) {
                Some(error) => Status {
                    status: "error",
                    message: error.clone(),
                },
                None => Status {
                    status: "healthy",
                    message: "loaded".to_owned(),
                },
            });
        }
        Ok(tree)
    }

    /// A fresh temporary path in the components folder.
    fn temp_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{TEMP_PREFIX}{}-{name}", uuid::Uuid::now_v7()))
    }
}

/// The table a declaration asks for.
fn spec(decl: &TableDecl) -> TableSpec {
    TableSpec {
        name: decl.table.clone(),
        primary_key: decl.primary_key.clone(),
        attributes: decl
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.indexed))
            .collect(),
        replicate: None,
    }
}
