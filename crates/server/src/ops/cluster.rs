//! add_node (set_node), update_node, remove_node, cluster_status, configure_cluster.

use std::sync::Arc;

use serde_json::Value;
use shoal_cluster::{Cluster, ClusterError};
use url::Url;

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
        other => ApiError::new(axum::http::StatusCode::BAD_GATEWAY, other.to_string()),
    }
}

/// The peer's replication address, `host:port`, from Harper's `url` (`wss://host:port`,
/// `host:port`, `host`; IPv6 literals in brackets) or `hostname` (`host` or `host:port`);
/// without a port, the default replication port.
fn target(value: &Value) -> Result<String, ApiError> {
    let (field, text) = match (value.get("url"), value.get("hostname")) {
        (Some(Value::String(url)), _) => ("url", url),
        (_, Some(Value::String(host))) => ("hostname", host),
        _ => return Err(ApiError::bad_request("'hostname' or 'url' is required")),
    };
    let bad = |why: &str| ApiError::bad_request(format!("invalid '{field}' {text:?}: {why}"));
    // Replication is Shoal's own protocol on its own port whatever scheme the URL names,
    // so the authority is read under a scheme with no default port of its own.
    let authority = text
        .split_once("://")
        .map_or(text.as_str(), |(_, rest)| rest);
    let url = Url::parse(&format!("shoal://{authority}")).map_err(|e| bad(&e.to_string()))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials go in 'authorization'"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("only a host and a port are allowed"));
    }
    Ok(format!(
        "{host}:{}",
        url.port().unwrap_or(DEFAULT_REPLICATION_PORT)
    ))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn node_addresses_from_urls_and_host_names() {
        for (request, address) in [
            (json!({"url": "wss://node-2:9933"}), "node-2:9933"),
            (json!({"url": "wss://node-2:9933/"}), "node-2:9933"),
            (json!({"url": "wss://node-2"}), "node-2:9933"),
            // The scheme's own default port is not the replication port.
            (json!({"url": "wss://node-2:443"}), "node-2:443"),
            (json!({"url": "ws://node-2:80"}), "node-2:80"),
            (json!({"url": "node-2:1234"}), "node-2:1234"),
            (json!({"url": "127.0.0.1:1"}), "127.0.0.1:1"),
            (
                json!({"url": "wss://db1.eu-west.example.com:9933"}),
                "db1.eu-west.example.com:9933",
            ),
            (json!({"url": "wss://[::1]:9934"}), "[::1]:9934"),
            (json!({"url": "wss://[::1]"}), "[::1]:9933"),
            (json!({"url": "[::1]:9934"}), "[::1]:9934"),
            (json!({"hostname": "node-2"}), "node-2:9933"),
            (json!({"hostname": "node-2:1234"}), "node-2:1234"),
            (json!({"hostname": "[::1]"}), "[::1]:9933"),
            (json!({"hostname": "10.0.0.1"}), "10.0.0.1:9933"),
            (json!({"url": "wss://a:1", "hostname": "b"}), "a:1"),
        ] {
            assert_eq!(target(&request).unwrap(), address, "{request}");
        }
    }

    #[test]
    fn malformed_node_addresses_are_bad_requests() {
        for (request, needle) in [
            (json!({}), "'hostname' or 'url' is required"),
            (json!({"url": 5}), "'hostname' or 'url' is required"),
            (json!({"url": "wss://"}), "invalid 'url' \"wss://\""),
            (json!({"url": ""}), "invalid 'url'"),
            (json!({"url": "wss://node-2:99999"}), "invalid port"),
            (json!({"url": "wss://node-2:port"}), "invalid port"),
            (json!({"url": "wss://[::1:9933"}), "invalid IPv6"),
            (json!({"url": "wss://node 2:9933"}), "invalid 'url'"),
            (json!({"url": "wss://admin:pw@node-2"}), "credentials"),
            (
                json!({"url": "wss://node-2/replication"}),
                "only a host and a port",
            ),
            (json!({"url": "wss://node-2?x=1"}), "only a host and a port"),
            (json!({"hostname": "node-2:1:2"}), "invalid 'hostname'"),
        ] {
            let err = target(&request).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{request}");
            assert!(err.message.contains(needle), "{request}: {}", err.message);
        }
    }
}
