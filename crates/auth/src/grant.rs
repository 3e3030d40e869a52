//! What the permission check lets through on one table ([`Grant`]), and how a refusal is
//! told ([`Denial`]): Harper's 403 body, which says which permissions were missing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::AuthError;
use crate::permission::AttributeGrant;
use crate::permissions::Action;

/// Why the permission check refused, in Harper's terms: what the role lacks
/// (`unauthorized_access`) and what it may not even see (`invalid_schema_items`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Denial {
    /// Messages, or `{schema, table, required_table_permissions,
    /// required_attribute_permissions}` objects.
    pub unauthorized_access: Vec<Value>,
    /// Databases, tables and attributes named that the role may not see, told as if they
    /// did not exist.
    pub invalid_schema_items: Vec<String>,
}

impl Denial {
    /// A refusal that one sentence explains.
    pub(crate) fn unauthorized(message: impl Into<String>) -> AuthError {
        AuthError::Denied(Box::new(Denial {
            unauthorized_access: vec![Value::String(message.into())],
            invalid_schema_items: Vec::new(),
        }))
    }

    /// A refusal because the role may not see what was named.
    pub(crate) fn invalid(item: impl Into<String>) -> AuthError {
        AuthError::Denied(Box::new(Denial {
            unauthorized_access: Vec::new(),
            invalid_schema_items: vec![item.into()],
        }))
    }

    /// Harper's 403 body: `error` with both lists.
    pub fn to_json(&self, error: &str) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("error".into(), json!(error));
        body.insert(
            "unauthorized_access".into(),
            json!(self.unauthorized_access),
        );
        body.insert(
            "invalid_schema_items".into(),
            json!(self.invalid_schema_items),
        );
        body
    }
}

/// What a user may do on the table the permission check was asked about, attribute by
/// attribute. Most roles grant whole tables; [`Grant::is_whole`] lets callers skip the
/// per-attribute work then.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    attributes: Option<Arc<Attributes>>,
}

/// A table grant that names attributes: every other attribute is denied.
#[derive(Debug)]
struct Attributes {
    database: String,
    table: String,
    by_name: Arc<HashMap<String, AttributeGrant>>,
    primary_key: String,
    /// The primary key's grant: as listed, or else whatever any listed attribute is
    /// granted (a role that may read some attribute may read which record it is in).
    key: AttributeGrant,
}

impl Grant {
    /// Every attribute, for everything the check allowed.
    pub fn whole() -> Grant {
        Grant::default()
    }

    /// A grant limited to the listed attributes of `database.table`.
    pub(crate) fn attributes(
        database: &str,
        table: &str,
        by_name: Arc<HashMap<String, AttributeGrant>>,
        primary_key: &str,
    ) -> Grant {
        let key = by_name.get(primary_key).copied().unwrap_or_else(|| {
            by_name
                .values()
                .fold(AttributeGrant::default(), |key, g| AttributeGrant {
                    read: key.read || g.read,
                    insert: key.insert || g.insert,
                    update: key.update || g.update,
                })
        });
        Grant {
            attributes: Some(Arc::new(Attributes {
                database: database.to_owned(),
                table: table.to_owned(),
                by_name,
                primary_key: primary_key.to_owned(),
                key,
            })),
        }
    }

    /// Whether every attribute is granted alike (no per-attribute rules).
    pub fn is_whole(&self) -> bool {
        self.attributes.is_none()
    }

    /// What is granted on one attribute; `None` when the role does not show it at all.
    fn attribute(&self, name: &str) -> Option<AttributeGrant> {
        let Some(a) = &self.attributes else {
            return Some(AttributeGrant {
                read: true,
                insert: true,
                update: true,
            });
        };
        if name == a.primary_key {
            return Some(a.key).filter(AttributeGrant::any);
        }
        a.by_name.get(name).copied().filter(AttributeGrant::any)
    }

    /// Whether the attribute may be read.
    pub fn may_read(&self, name: &str) -> bool {
        self.attribute(name).is_some_and(|g| g.read)
    }

    /// Whether the attribute is shown at all (in descriptions of the table).
    pub fn may_see(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// Removes what may not be read from a record.
    pub fn filter(&self, record: &mut Map<String, Value>) {
        if !self.is_whole() {
            record.retain(|name, _| self.may_read(name));
        }
    }

    /// The attributes that may be read, when not all may (Harper turns a `*` in
    /// `get_attributes` into this list).
    pub fn readable(&self) -> Option<Vec<String>> {
        let a = self.attributes.as_ref()?;
        let mut names: Vec<String> = a
            .by_name
            .iter()
            .filter(|(name, g)| g.read && **name != a.primary_key)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        if a.key.read {
            names.insert(0, a.primary_key.clone());
        }
        Some(names)
    }

    /// Checks the attributes a request names against what `action` needs of each: read
    /// for searched and returned ones, insert and update for written ones. Refuses the
    /// whole request, naming every attribute that fails, as Harper does.
    pub fn check_attributes<'a>(
        &self,
        action: Action,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AuthError> {
        let Some(a) = &self.attributes else {
            return Ok(());
        };
        let needed: &[&str] = match action {
            Action::Read | Action::Describe => &["read"],
            Action::Insert => &["insert"],
            Action::Update => &["update"],
            Action::Upsert => &["insert", "update"],
            _ => return Ok(()),
        };
        let mut denial = Denial::default();
        let mut missing: Vec<(&str, Vec<&str>)> = Vec::new();
        // Each name once, however often the request repeats it (every record of a write).
        let mut seen = HashSet::new();
        for name in names.into_iter().filter(|name| seen.insert(*name)) {
            let Some(grant) = self.attribute(name) else {
                denial.invalid_schema_items.push(format!(
                    "Attribute '{name}' does not exist on '{}.{}'",
                    a.database, a.table
                ));
                continue;
            };
            let lacking: Vec<&str> = needed
                .iter()
                .copied()
                .filter(|perm| match *perm {
                    "read" => !grant.read,
                    "insert" => !grant.insert,
                    _ => !grant.update,
                })
                .collect();
            if !lacking.is_empty() {
                missing.push((name, lacking));
            }
        }
        if !missing.is_empty() {
            let attributes: Vec<Value> = missing
                .into_iter()
                .map(|(name, perms)| json!({"attribute_name": name, "required_permissions": perms}))
                .collect();
            denial.unauthorized_access.push(json!({
                "schema": a.database,
                "table": a.table,
                "required_table_permissions": [],
                "required_attribute_permissions": attributes,
            }));
        }
        if denial == Denial::default() {
            return Ok(());
        }
        Err(AuthError::Denied(Box::new(denial)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        let by_name = HashMap::from([
            (
                "name".to_owned(),
                AttributeGrant {
                    read: true,
                    insert: true,
                    update: false,
                },
            ),
            (
                "age".to_owned(),
                AttributeGrant {
                    read: true,
                    insert: false,
                    update: false,
                },
            ),
            ("secret".to_owned(), AttributeGrant::default()),
        ]);
        Grant::attributes("dev", "dog", Arc::new(by_name), "id")
    }

    #[test]
    fn reads_keep_only_granted_attributes_and_the_key() {
        let grant = grant();
        let mut record = json!({"id": 1, "name": "Rex", "age": 3, "secret": "x", "new": 1})
            .as_object()
            .cloned()
            .unwrap();
        grant.filter(&mut record);
        assert_eq!(
            Value::Object(record),
            json!({"id": 1, "name": "Rex", "age": 3})
        );
        assert_eq!(grant.readable().unwrap(), ["id", "age", "name"]);
        assert!(grant.may_see("id") && !grant.may_see("secret") && !grant.may_see("new"));
        assert!(Grant::whole().readable().is_none() && Grant::whole().may_read("any"));
    }

    #[test]
    fn writes_are_refused_whole_with_what_is_missing() {
        let grant = grant();
        assert!(
            grant
                .check_attributes(Action::Insert, ["id", "name"])
                .is_ok()
        );
        let Err(AuthError::Denied(denial)) =
            grant.check_attributes(Action::Upsert, ["id", "name", "age", "secret", "name"])
        else {
            panic!("an upsert of attributes without update must be refused");
        };
        // The key inherits insert from `name`; nothing may update anything.
        assert_eq!(
            denial.unauthorized_access,
            [json!({
                "schema": "dev", "table": "dog", "required_table_permissions": [],
                "required_attribute_permissions": [
                    {"attribute_name": "id", "required_permissions": ["update"]},
                    {"attribute_name": "name", "required_permissions": ["update"]},
                    {"attribute_name": "age", "required_permissions": ["insert", "update"]},
                ]
            })]
        );
        assert_eq!(
            denial.invalid_schema_items,
            ["Attribute 'secret' does not exist on 'dev.dog'"]
        );
        assert!(grant.check_attributes(Action::Delete, ["secret"]).is_ok());
        assert!(
            Grant::whole()
                .check_attributes(Action::Update, ["x"])
                .is_ok()
        );
    }
}
