//! A role's attribute rules ([`Grant`]) applied to REST: what a query may name, what a
//! record shows, what a write may touch, and an ETag that tells nothing of what is hidden.
//!
//! A whole grant (super users, roles granting whole tables) costs nothing here: records
//! are served as stored and no attribute is looked at.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value};
use shoal_auth::{Action, Grant};
use shoal_query::{Condition, Projection, Query, QueryError};
use shoal_store::{CREATED_TIME, UPDATED_TIME};

use crate::error::ApiError;

/// Every attribute a query names: in its conditions, its sort and its select.
fn named(query: &Query) -> Vec<&str> {
    let mut names = Vec::new();
    let mut stack: Vec<&Condition> = query.condition.iter().collect();
    while let Some(condition) = stack.pop() {
        match condition {
            Condition::Compare { attribute, .. } => names.push(attribute.as_str()),
            Condition::Group { conditions, .. } => stack.extend(conditions),
        }
    }
    let mut sort = query.sort.as_ref();
    while let Some(key) = sort {
        names.push(key.attribute.as_str());
        sort = key.next.as_deref();
    }
    if let Projection::Only(list) = &query.projection {
        names.extend(list.iter().map(String::as_str));
    }
    names
}

/// Refuses a query naming an attribute the role may not read: which records match a
/// condition, or the order a sort puts them in, would tell the hidden values.
pub(super) fn check_query(grant: &Grant, query: &Query) -> Result<(), ApiError> {
    Ok(grant.check_attributes(Action::Read, named(query))?)
}

/// A stored record's JSON as the role may see it (as stored, for a whole grant).
pub(super) fn shown<'a>(grant: &Grant, json: &'a [u8]) -> Result<Cow<'a, [u8]>, QueryError> {
    if grant.is_whole() {
        return Ok(Cow::Borrowed(json));
    }
    let mut record: Map<String, Value> = serde_json::from_slice(json)
        .map_err(|e| QueryError::Invalid(format!("stored record unreadable: {e}")))?;
    grant.filter(&mut record);
    Ok(Cow::Owned(
        serde_json::to_vec(&record).expect("maps serialise"),
    ))
}

/// The ETag of a record version, given what is served of it. For a whole grant, the
/// version's stamp. Otherwise a hash of the served JSON: the stamp changes when a hidden
/// attribute does, which would let a client watch it change, and a digest of the stored
/// record would let it test guesses of the hidden values; a digest of what it is shown
/// tells it nothing it does not already see. (The hash is std's SipHash with fixed keys:
/// the same for every node running the same build.)
pub(super) fn etag(grant: &Grant, hlc: u64, served: &[u8]) -> String {
    if grant.is_whole() {
        return format!("\"{hlc:x}\"");
    }
    let mut hasher = DefaultHasher::new();
    served.hash(&mut hasher);
    format!("\"a{:x}\"", hasher.finish())
}

/// Refuses a write of `record` if the role may not `action` one of its attributes;
/// `located` is the primary key when the URL names the record, which the write does not
/// change.
pub(super) fn check_write(
    grant: &Grant,
    action: Action,
    record: &Map<String, Value>,
    located: Option<&str>,
) -> Result<(), ApiError> {
    let names = record
        .keys()
        .map(String::as_str)
        .filter(|name| Some(*name) != located);
    Ok(grant.check_attributes(action, names)?)
}

/// Completes a PUT that replaces `stored`: attributes the role may not update keep their
/// stored values, as Harper's tables restore them, so that a role seeing part of a record
/// cannot erase the rest by replacing it. (The store sets the timestamps itself.)
pub(super) fn keep_unwritable(
    grant: &Grant,
    record: &mut Map<String, Value>,
    stored: Map<String, Value>,
) {
    for (name, value) in stored {
        if record.contains_key(&name) || name == CREATED_TIME || name == UPDATED_TIME {
            continue;
        }
        if grant
            .check_attributes(Action::Update, [name.as_str()])
            .is_err()
        {
            record.insert(name, value);
        }
    }
}

/// A table description showing only the attributes the role may see.
pub(super) fn describe(grant: &Grant, description: &mut Value) {
    if grant.is_whole() {
        return;
    }
    if let Some(Value::Array(attributes)) = description.get_mut("attributes") {
        attributes.retain(|a| {
            a.get("attribute")
                .and_then(Value::as_str)
                .is_some_and(|name| grant.may_see(name))
        });
    }
}
