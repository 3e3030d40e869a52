//! search_by_id, search_by_value, search_by_conditions.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;
use shoal_auth::{Action, Grant};
use shoal_query::{Comparator, Condition, Operator, Projection, Query, QueryError, Sort};
use shoal_store::Database;

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;
use crate::stream::{self, JSON, JsonArray};

pub(super) async fn by_id(
    state: &AppState,
    grant: &Grant,
    mut req: OpRequest,
) -> Result<Reply, ApiError> {
    let ids = match req.take(&["ids", "hash_values"]) {
        Some(Value::Array(ids)) => ids,
        Some(_) => return Err(ApiError::bad_request("'ids' must be an array")),
        None => return Err(ApiError::bad_request("'ids' is required")),
    };
    if ids.iter().any(|id| !(id.is_string() || id.is_number())) {
        return Err(ApiError::bad_request("'ids' must be strings or numbers"));
    }
    let projection = restrict(
        grant,
        Vec::new(),
        Projection::from_attributes(req.get_attributes()?),
    )?;
    let db = state.store.database(&req.database()?)?;
    let table = req.table()?;
    if ids.len() <= INLINE_IDS
        && let Some(answer) = by_id_inline(&db, &table, &ids, &projection)?
    {
        return Ok(Reply::Response(
            ([(header::CONTENT_TYPE, JSON)], answer).into_response(),
        ));
    }
    let response = stream::respond(JSON, state.query.stall_timeout, move |out| {
        let snapshot = db.snapshot()?;
        let table = snapshot.table(&table)?;
        let mut array = JsonArray::new(out);
        shoal_query::by_ids(&snapshot, &table, &ids, &projection, |json| {
            Ok(array.push(json))
        })?;
        array.finish();
        Ok(())
    })
    .await?;
    Ok(Reply::Response(response))
}

/// Ids looked up on the request's own task: a point read takes microseconds, less than
/// handing the work to a blocking thread and its answer back through a channel.
const INLINE_IDS: usize = 16;
/// The most an answer built on the request's own task may hold; a larger one streams.
const INLINE_BYTES: usize = 1 << 20;

/// The answer to a short `search_by_id`, or `None` when it is too large to build here.
fn by_id_inline(
    db: &Database,
    table: &str,
    ids: &[Value],
    projection: &Projection,
) -> Result<Option<Vec<u8>>, ApiError> {
    let snapshot = db.snapshot()?;
    let table = snapshot.table(table)?;
    let mut out = vec![b'['];
    let mut fits = true;
    shoal_query::by_ids(&snapshot, &table, ids, projection, |json| {
        fits = out.len() + json.len() < INLINE_BYTES;
        if fits {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(json);
        }
        Ok(fits)
    })?;
    out.push(b']');
    Ok(fits.then_some(out))
}

pub(super) async fn by_value(
    state: &AppState,
    grant: &Grant,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let attribute = req.string(&["search_attribute", "attribute"])?;
    let value = req
        .get(&["search_value", "value"])
        .ok_or_else(|| ApiError::bad_request("'search_value' is required"))?;
    let mut query = paging(state, &req)?;
    query.condition = shoal_query::value_condition(&attribute, value);
    if query.sort.is_none() {
        // Harper answers in the order of the searched attribute's index.
        query.sort = Some(Sort {
            attribute: attribute.clone(),
            descending: req.optional::<bool>(&["desc"])?.unwrap_or(false),
            next: None,
        });
    }
    restrict_query(grant, &mut query, Some(&attribute))?;
    run(state, &req, query).await
}

pub(super) async fn by_conditions(
    state: &AppState,
    grant: &Grant,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let conditions = req
        .get(&["conditions"])
        .ok_or_else(|| ApiError::bad_request("'conditions' is required"))?;
    let operator = operator(req.get(&["operator"]))?;
    let mut query = paging(state, &req)?;
    query.condition = Some(group(operator, conditions, 0)?);
    restrict_query(grant, &mut query, None)?;
    run(state, &req, query).await
}

/// Applies a role's attribute rules to a search: every attribute it searches (`searched`,
/// each condition's), sorts by or asks for must be readable, or the whole search is refused
/// naming each one; what it returns is limited to the readable attributes.
fn restrict_query(
    grant: &Grant,
    query: &mut Query,
    searched: Option<&str>,
) -> Result<(), ApiError> {
    if grant.is_whole() {
        return Ok(());
    }
    let mut names: Vec<&str> = Vec::new();
    let mut pending: Vec<&Condition> = query.condition.iter().collect();
    while let Some(condition) = pending.pop() {
        match condition {
            Condition::Compare { attribute, .. } => names.push(attribute),
            Condition::Group { conditions, .. } => pending.extend(conditions.iter().rev()),
        }
    }
    names.extend(searched);
    // Sorting by an attribute tells its order, so it is read too (Harper does not check it).
    let mut sort = query.sort.as_ref();
    while let Some(key) = sort {
        names.push(&key.attribute);
        sort = key.next.as_deref();
    }
    let projection = std::mem::replace(&mut query.projection, Projection::All);
    query.projection = restrict(grant, names, projection)?;
    Ok(())
}

/// Checks the attributes a search names and the ones it asks for; a `*` (or no
/// `get_attributes`) becomes the attributes the role may read, as Harper does.
fn restrict(
    grant: &Grant,
    names: Vec<&str>,
    projection: Projection,
) -> Result<Projection, ApiError> {
    let Some(readable) = grant.readable() else {
        return Ok(projection);
    };
    let asked = match &projection {
        Projection::Only(asked) => asked.as_slice(),
        Projection::All => &[],
    };
    let names = names.into_iter().chain(asked.iter().map(String::as_str));
    grant.check_attributes(Action::Read, names)?;
    Ok(match projection {
        Projection::All => Projection::Only(readable),
        only => only,
    })
}

/// offset, limit, sort and get_attributes, shared by the searches.
fn paging(state: &AppState, req: &OpRequest) -> Result<Query, ApiError> {
    Ok(Query {
        condition: None,
        sort: req
            .optional::<SortSpec>(&["sort"])?
            .map(SortSpec::into_sort),
        offset: req.count("offset")?.unwrap_or(0),
        limit: req.count("limit")?,
        projection: Projection::from_attributes(req.get_attributes()?),
        limits: state.query.limits(),
    })
}

/// Runs a search, streaming its results as a JSON array.
async fn run(state: &AppState, req: &OpRequest, query: Query) -> Result<Reply, ApiError> {
    let db = state.store.database(&req.database()?)?;
    let table = req.table()?;
    let response = stream::respond(JSON, state.query.stall_timeout, move |out| {
        let snapshot = db.snapshot()?;
        let table = snapshot.table(&table)?;
        let mut array = JsonArray::new(out);
        shoal_query::for_each(&snapshot, &table, &query, |json| Ok(array.push(json)))?;
        array.finish();
        Ok(())
    })
    .await?;
    Ok(Reply::Response(response))
}

fn operator(value: Option<&Value>) -> Result<Operator, ApiError> {
    match value.map(|v| v.as_str().map(str::to_lowercase)) {
        None => Ok(Operator::And),
        Some(Some(op)) if op == "and" => Ok(Operator::And),
        Some(Some(op)) if op == "or" => Ok(Operator::Or),
        _ => Err(ApiError::bad_request("'operator' must be 'and' or 'or'")),
    }
}

/// A group `depth` levels below the top (the top-level `conditions` is level 0).
fn group(operator: Operator, conditions: &Value, depth: usize) -> Result<Condition, ApiError> {
    // Checked before descending: each level recurses.
    if depth > shoal_query::MAX_DEPTH {
        return Err(QueryError::TooDeep.into());
    }
    let list = conditions
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::bad_request("'conditions' must be a non-empty array"))?;
    let conditions = list
        .iter()
        .map(|c| condition(c, depth))
        .collect::<Result<_, _>>()?;
    Ok(Condition::Group {
        operator,
        conditions,
    })
}

fn condition(value: &Value, depth: usize) -> Result<Condition, ApiError> {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| value.get(*n).filter(|v| !v.is_null()))
    };
    if let Some(nested) = field(&["conditions"]) {
        return group(operator(field(&["operator"]))?, nested, depth + 1);
    }
    let attribute = field(&["search_attribute", "attribute"])
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("each condition needs a 'search_attribute'"))?;
    let comparator = field(&["search_type", "comparator"])
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("each condition needs a 'search_type'"))?;
    let value = field(&["search_value", "value"])
        .cloned()
        .unwrap_or(Value::Null);
    Ok(Condition::Compare {
        attribute: attribute.to_owned(),
        comparator: Comparator::parse(comparator)?,
        value,
    })
}

/// Harper's sort object: `{attribute, descending, next}`.
#[derive(Deserialize)]
struct SortSpec {
    attribute: String,
    #[serde(default)]
    descending: bool,
    next: Option<Box<SortSpec>>,
}

impl SortSpec {
    fn into_sort(self) -> Sort {
        Sort {
            attribute: self.attribute,
            descending: self.descending,
            next: self.next.map(|n| Box::new(n.into_sort())),
        }
    }
}
