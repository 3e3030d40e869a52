//! add_node (set_node), update_node, remove_node, cluster_status, configure_cluster.

use std::sync::Arc;

use serde_json::Value;
use shoal_cluster::{Cluster, ClusterError};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

/// Port peers replicate on unless a `url` says otherwise.
const DEFAULT_REPLICATION_PORT: u16 = 9933;

fn cluster(state: &AppState) -> Result<&Arc<Cluster>, ApiError> {
    state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("clustering is not enabled on this node"))
}

fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::Store(e) => e.into(),
        ClusterError::Refused(_) | ClusterError::InvalidNodeName(_) => {
            ApiError::bad_request(e.to_string())
        }
        other => ApiError {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message: other.to_string(),
        },
    }
}

/// The peer's replication address from `url` (`wss://host:port`, `host:port`) or
/// `hostname` (with the default port).
fn target(value: &Value) -> Result<String, ApiError> {
    if let Some(url) = value.get("url").and_then(Value::as_str) {
        let bare = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .trim_end_matches('/');
        return Ok(if bare.contains(':') {
            bare.to_owned()
        } else {
            format!("{bare}:{DEFAULT_REPLICATION_PORT}")
        });
    }
    match value.get("hostname").and_then(Value::as_str) {
        Some(host) if host.contains(':') => Ok(host.to_owned()),
        Some(host) => Ok(format!("{host}:{DEFAULT_REPLICATION_PORT}")),
        None => Err(ApiError::bad_request("'hostname' or 'url' is required")),
    }
}

async fn add(state: &AppState, spec: &Value) -> Result<String, ApiError> {
    let cluster = cluster(state)?;
    let url = target(spec)?;
    let auth = spec.get("authorization").ok_or_else(|| {
        ApiError::bad_request(
            "'authorization' with the other node's username and password is required",
        )
    })?;
    let field = |name: &str| {
        auth.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("'authorization.{name}' is required")))
    };
    // Optional pin: the other node's CA fingerprint, as its cluster_status shows it.
    let fingerprint = match spec.get("ca_fingerprint") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.as_str()),
        Some(_) => return Err(ApiError::bad_request("'ca_fingerprint' must be a string")),
    };
    let name = cluster
        .add_node(&url, field("username")?, field("password")?, fingerprint)
        .await
        .map_err(cluster_error)?;
    let (subscribe, publish) = routes(spec)?;
    if subscribe.is_some() || publish.is_some() {
        cluster
            .update_node(&name, subscribe, publish)
            .await
            .map_err(cluster_error)?;
    }
    Ok(name)
}

/// Databases a node takes in and sends out; `None` leaves a list as it is.
type Routes = (Option<Vec<String>>, Option<Vec<String>>);

/// `subscriptions: [{database, subscribe, publish}]`: which databases flow from (`subscribe`)
/// and to (`publish`) the node; absent: all.
fn routes(spec: &Value) -> Result<Routes, ApiError> {
    let Some(list) = spec.get("subscriptions") else {
        return Ok((None, None));
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::bad_request("'subscriptions' must be an array"))?;
    let (mut subscribe, mut publish) = (Vec::new(), Vec::new());
    for item in list {
        let db = item
            .get("database")
            .or_else(|| item.get("schema"))
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("each subscription needs a 'database'"))?;
        if item
            .get("subscribe")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            subscribe.push(db.to_owned());
        }
        if item.get("publish").and_then(Value::as_bool).unwrap_or(true) {
            publish.push(db.to_owned());
        }
    }
    Ok((Some(subscribe), Some(publish)))
}

pub(super) async fn add_node(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let name = add(state, &req.to_value()).await?;
    Ok(Reply::message(format!(
        "Successfully added '{name}' to the cluster"
    )))
}

pub(super) async fn configure_cluster(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let connections = req
        .get(&["connections"])
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("'connections' must be an array"))?;
    let mut names = Vec::new();
    for spec in connections {
        names.push(add(state, spec).await?);
    }
    Ok(Reply::message(format!(
        "Cluster successfully configured: {}",
        names.join(", ")
    )))
}

pub(super) async fn update_node(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let name = req.string(&["node_name", "name"])?;
    let (subscribe, publish) = routes(&req.to_value())?;
    cluster(state)?
        .update_node(&name, subscribe, publish)
        .await
        .map_err(cluster_error)?;
    Ok(Reply::message(format!("Successfully updated '{name}'")))
}

pub(super) async fn remove_node(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let name = req.string(&["node_name", "name", "hostname"])?;
    if !cluster(state)?
        .remove_node(&name)
        .await
        .map_err(cluster_error)?
    {
        return Err(ApiError::not_found(format!(
            "node '{name}' is not a member"
        )));
    }
    Ok(Reply::message(format!(
        "Successfully removed '{name}' from the cluster"
    )))
}

pub(super) fn cluster_status(state: &AppState) -> Result<Reply, ApiError> {
    Ok(Reply::Json(
        cluster(state)?.status().map_err(cluster_error)?,
    ))
}
