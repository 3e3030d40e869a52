//! A role's permissions, read from the `permission` object Harper's roles carry:
//!
//! ```json
//! {"super_user": false, "structure_user": ["dev"],
//!  "dev": {"tables": {"dog": {"read": true, "insert": true, "update": false, "delete": false,
//!          "attribute_permissions": [{"attribute_name": "owner", "read": true, "insert": false, "update": false}]}}}}
//! ```
//!
//! Reading is lenient (anything that is not `true` grants nothing): roles are validated
//! when they are written, and a role that replicated in from a newer node must still
//! deny what it does not grant rather than fail to load.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

/// What a role lets its users do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permission {
    /// May do everything (but change `system`).
    pub super_user: bool,
    /// May replicate (join a cluster), and nothing else.
    pub cluster_user: bool,
    /// Where the role may create and drop tables and attributes (and, for
    /// [`Structure::All`], databases); it may also read and write every table there.
    pub structure: Structure,
    /// Grants per database, then per table.
    databases: HashMap<String, HashMap<String, TableGrant>>,
}

/// A role's `structure_user` permission.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Structure {
    /// Not a structure user.
    #[default]
    None,
    /// `true`: every database, and databases themselves.
    All,
    /// The databases named in the list.
    Databases(HashSet<String>),
}

/// What a role grants on one table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableGrant {
    /// May read records.
    pub read: bool,
    /// May add records.
    pub insert: bool,
    /// May change records.
    pub update: bool,
    /// May remove records.
    pub delete: bool,
    /// Per-attribute grants, when the role lists any: then every attribute it does not
    /// list is denied.
    pub attributes: Option<Arc<HashMap<String, AttributeGrant>>>,
}

impl TableGrant {
    /// Everything, on every attribute.
    pub(crate) const ALL: TableGrant = TableGrant {
        read: true,
        insert: true,
        update: true,
        delete: true,
        attributes: None,
    };

    /// Whether the role may do anything at all here; a table it may do nothing with is
    /// not shown to it (Harper's `describe`).
    pub fn any(&self) -> bool {
        self.read || self.insert || self.update || self.delete
    }
}

/// What a role grants on one attribute (deletes are granted per table only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributeGrant {
    /// May read it.
    pub read: bool,
    /// May set it in a new record.
    pub insert: bool,
    /// May change it in an existing record.
    pub update: bool,
}

impl AttributeGrant {
    /// Whether the attribute is shown at all.
    pub fn any(&self) -> bool {
        self.read || self.insert || self.update
    }
}

/// Keys of a `permission` object that are not database names.
const ROLE_KEYS: [&str; 4] = ["super_user", "cluster_user", "structure_user", "operations"];

impl Permission {
    /// Everything: the permission of a super user.
    pub fn super_user() -> Permission {
        Permission {
            super_user: true,
            ..Permission::default()
        }
    }

    /// Reads a role's `permission` object.
    pub fn from_value(permission: &Value) -> Permission {
        let Some(object) = permission.as_object() else {
            return Permission::default();
        };
        let structure = match object.get("structure_user") {
            Some(Value::Bool(true)) => Structure::All,
            Some(Value::Array(names)) => Structure::Databases(
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => Structure::None,
        };
        let databases = object
            .iter()
            .filter(|(key, _)| !ROLE_KEYS.contains(&key.as_str()))
            .filter_map(|(database, grant)| {
                let tables = grant.get("tables")?.as_object()?;
                let tables = tables
                    .iter()
                    .filter_map(|(table, grant)| Some((table.clone(), table_grant(grant)?)))
                    .collect();
                Some((database.clone(), tables))
            })
            .collect();
        Permission {
            super_user: flag(object, "super_user"),
            cluster_user: flag(object, "cluster_user"),
            structure,
            databases,
        }
    }

    /// Whether the role may create and drop tables and attributes in `database`.
    pub fn structures(&self, database: &str) -> bool {
        match &self.structure {
            Structure::None => false,
            Structure::All => true,
            Structure::Databases(names) => names.contains(database),
        }
    }

    /// What the role grants on a table; `None` when it grants nothing there.
    pub fn table(&self, database: &str, table: &str) -> Option<&TableGrant> {
        if self.super_user || self.structures(database) {
            return Some(&TableGrant::ALL);
        }
        self.databases
            .get(database)?
            .get(table)
            .filter(|grant| grant.any())
    }

    /// Whether the role may see `database` at all: it grants something on one of its
    /// tables, or structures it. (Its tables are still listed one by one.)
    pub fn sees_database(&self, database: &str) -> bool {
        self.super_user
            || self.structures(database)
            || self
                .databases
                .get(database)
                .is_some_and(|tables| tables.values().any(TableGrant::any))
    }
}

fn flag(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key) == Some(&Value::Bool(true))
}

fn table_grant(grant: &Value) -> Option<TableGrant> {
    let grant = grant.as_object()?;
    let attributes = grant
        .get("attribute_permissions")
        .and_then(Value::as_array)
        .filter(|list| !list.is_empty())
        .map(|list| {
            let by_name = list
                .iter()
                .filter_map(|item| {
                    let item = item.as_object()?;
                    let name = item.get("attribute_name")?.as_str()?;
                    let grant = AttributeGrant {
                        read: flag(item, "read"),
                        insert: flag(item, "insert"),
                        update: flag(item, "update"),
                    };
                    Some((name.to_owned(), grant))
                })
                .collect();
            Arc::new(by_name)
        });
    Some(TableGrant {
        read: flag(grant, "read"),
        insert: flag(grant, "insert"),
        update: flag(grant, "update"),
        delete: flag(grant, "delete"),
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grants_are_read_from_harpers_shape() {
        let permission = Permission::from_value(&json!({
            "super_user": false,
            "structure_user": ["ops"],
            "dev": {"tables": {
                "dog": {"read": true, "insert": true, "update": false, "delete": false,
                        "attribute_permissions": [
                            {"attribute_name": "name", "read": true, "insert": true, "update": false},
                            {"attribute_name": "secret", "read": false, "insert": false, "update": false}
                        ]},
                "cat": {"read": "yes", "insert": false, "update": false, "delete": false,
                        "attribute_permissions": []},
                "bird": {"read": false, "insert": false, "update": false, "delete": true}
            }}
        }));
        assert!(!permission.super_user && !permission.cluster_user);
        let dog = permission.table("dev", "dog").unwrap();
        assert!(dog.read && dog.insert && !dog.update && !dog.delete);
        let attributes = dog.attributes.as_ref().unwrap();
        assert_eq!(
            attributes["name"],
            AttributeGrant {
                read: true,
                insert: true,
                update: false
            }
        );
        assert!(!attributes["secret"].any());
        // "yes" is not true, and an empty attribute list restricts nothing.
        assert!(permission.table("dev", "cat").is_none());
        assert!(permission.table("dev", "bird").unwrap().delete);
        assert!(permission.table("dev", "fish").is_none());
        assert!(permission.sees_database("dev"));
        assert!(!permission.sees_database("prod"));
        // A structure user reads and writes everything in its databases.
        assert_eq!(permission.table("ops", "anything"), Some(&TableGrant::ALL));
        assert!(permission.structures("ops") && !permission.structures("dev"));
    }

    #[test]
    fn structure_user_true_covers_every_database() {
        let permission = Permission::from_value(&json!({"structure_user": true}));
        assert_eq!(permission.structure, Structure::All);
        assert!(permission.structures("any") && permission.sees_database("any"));
        let nothing = Permission::from_value(&json!("not an object"));
        assert_eq!(nothing, Permission::default());
        assert!(nothing.table("dev", "dog").is_none());
    }
}
