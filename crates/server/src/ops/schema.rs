//! Databases, tables and attributes: create, drop, describe.

use serde_json::{Map, Value};
use shoal_auth::{Access, Action, Grant, User, Via};
use shoal_store::{TableSpec, Write};

use super::Reply;
use crate::AppState;
use crate::describe::{describe_tables, describe_visible};
use crate::error::ApiError;
use crate::request::OpRequest;

pub(super) async fn create_database(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let name = req.database()?;
    state.store.create_database(&name).await?;
    Ok(Reply::message(format!(
        "database '{name}' successfully created"
    )))
}

pub(super) async fn drop_database(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let name = req.string(&["database", "schema"])?;
    state.store.drop_database(&name).await?;
    Ok(Reply::message(format!("successfully deleted '{name}'")))
}

pub(super) async fn create_table(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let mut primary_key = req.optional::<String>(&["primary_key", "hash_attribute"])?;
    let mut attributes = Vec::new();
    if let Some(list) = req.get(&["attributes"]) {
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::bad_request("'attributes' must be an array"))?;
        for attr in list {
            let name = attr
                .get("name")
                .or_else(|| attr.get("attribute"))
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("each attribute needs a 'name'"))?;
            if attr.get("is_primary_key") == Some(&Value::Bool(true)) && primary_key.is_none() {
                primary_key = Some(name.to_owned());
            }
            let indexed = attr
                .get("indexed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            attributes.push((name.to_owned(), indexed));
        }
    }
    let primary_key =
        primary_key.ok_or_else(|| ApiError::bad_request("'primary_key' is required"))?;
    let replicate = req.optional::<bool>(&["replicate"])?;
    let spec = TableSpec {
        name: table.clone(),
        primary_key,
        attributes,
        replicate,
    };
    crate::databases::create_table(&state.store, &database, spec).await?;
    Ok(Reply::message(format!(
        "table '{database}.{table}' successfully created."
    )))
}

pub(super) async fn drop_table(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let db = state.store.database(&database)?;
    db.write(Write::DropTable(table.clone()), None).await?;
    Ok(Reply::message(format!(
        "successfully deleted table '{database}.{table}'"
    )))
}

pub(super) async fn create_attribute(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let attribute = req.string(&["attribute"])?;
    let indexed = req.optional::<bool>(&["indexed"])?.unwrap_or(true);
    let db = state.store.database(&database)?;
    let write = Write::CreateAttribute {
        table: table.clone(),
        attribute: attribute.clone(),
        indexed,
    };
    db.write(write, None).await?;
    Ok(Reply::message(format!(
        "attribute '{database}.{table}.{attribute}' successfully created."
    )))
}

pub(super) async fn drop_attribute(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let attribute = req.string(&["attribute"])?;
    let db = state.store.database(&database)?;
    let write = Write::DropAttribute {
        table,
        attribute: attribute.clone(),
    };
    db.write(write, None).await?;
    Ok(Reply::message(format!(
        "successfully deleted attribute '{attribute}'"
    )))
}

/// What `user` may see of a table, by the one permission check; `None` hides it.
fn visible(state: &AppState, user: &User, database: &str, table: Option<&str>) -> Option<Grant> {
    let access = Access {
        via: Via::Operations,
        operation: "describe",
        action: Action::Describe,
        database: Some(database),
        table,
    };
    state.auth.check(user, &access).ok()
}

/// Every database the user may see, with the tables and attributes it may see.
pub(super) fn describe_all(state: &AppState, user: &User) -> Result<Reply, ApiError> {
    let mut out = Map::new();
    for db in state.store.databases() {
        let name = db.name();
        if name == shoal_store::SYSTEM_DATABASE || visible(state, user, name, None).is_none() {
            continue;
        }
        let tables = describe_tables(&db, |table| visible(state, user, name, Some(table)))?;
        out.insert(name.to_owned(), tables);
    }
    Ok(Reply::Json(Value::Object(out)))
}

/// The tables of one database the user may see (the dispatcher's check let it see the
/// database).
pub(super) fn describe_database(
    state: &AppState,
    user: &User,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let db = state.store.database(&req.database()?)?;
    let name = db.name();
    let tables = describe_tables(&db, |table| visible(state, user, name, Some(table)))?;
    Ok(Reply::Json(tables))
}

/// One table, with the attributes the dispatcher's grant shows.
pub(super) fn describe_table(
    state: &AppState,
    grant: &Grant,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let db = state.store.database(&database)?;
    let snapshot = db.snapshot()?;
    let def = snapshot.table(&table)?;
    Ok(Reply::Json(describe_visible(&db, &snapshot, &def, grant)?))
}
