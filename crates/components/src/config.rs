//! A component's `config.yaml` and the tables its schema files declare.

use std::io::ErrorKind;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::ComponentError;
use crate::error::io;
use crate::names::file_path;
use crate::schema::{TableDecl, parse_schema};

/// The `config.yaml` a new component starts with.
pub(crate) const DEFAULT_CONFIG: &str = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";

/// A component's `config.yaml`, the parts Shoal reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComponentConfig {
    /// `rest: true` or `rest: {…}` serves the exported tables over REST.
    rest: Option<Rest>,
    /// Where its schema files are.
    graphql_schema: Option<SchemaFiles>,
}

/// `rest: true|false`, or its options (which turn it on).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rest {
    Switch(bool),
    Options(IgnoredAny),
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

/// The tables the component in `folder` declares; exported ones only if its config
/// turns REST on. A missing config or schema file declares nothing.
pub(crate) fn declarations(folder: &Path) -> Result<Vec<TableDecl>, ComponentError> {
    let config: ComponentConfig = match std::fs::read_to_string(folder.join("config.yaml")) {
        Ok(text) => {
            serde_saphyr::from_str(&text).map_err(|e| ComponentError::Config(e.to_string()))?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => ComponentConfig::default(),
        Err(e) => return Err(io("config.yaml", e)),
    };
    let files = match config.graphql_schema.map(|s| s.files) {
        None => Vec::new(),
        Some(OneOrMany::One(f)) => vec![f],
        Some(OneOrMany::Many(list)) => list,
    };
    let rest = !matches!(config.rest, None | Some(Rest::Switch(false)));
    let mut decls = Vec::new();
    for file in files {
        let path = folder.join(file_path(&file)?.join("/"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&file, e)),
        };
        let mut parsed =
            parse_schema(&text).map_err(|error| ComponentError::Schema { file, error })?;
        if !rest {
            for decl in &mut parsed {
                decl.export = None;
            }
        }
        decls.extend(parsed);
    }
    Ok(decls)
}
