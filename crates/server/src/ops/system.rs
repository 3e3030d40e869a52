//! system_information.

use serde_json::{Map, Value, json};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

pub(super) fn system_information(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let wanted: Option<Vec<String>> = req.optional(&["attributes"])?;
    let memory = memory_info();
    let mut all = Map::new();
    all.insert(
        "system".into(),
        json!({
            "platform": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "hostname": state.info.hostname,
            "node_name": state.store.node_name(),
            "version": state.info.version,
        }),
    );
    all.insert(
        "time".into(),
        json!({
            "current": shoal_store::wall_ms(),
            "uptime": state.info.started.elapsed().as_secs(),
        }),
    );
    all.insert(
        "cpu".into(),
        json!({ "cores": std::thread::available_parallelism().map_or(1, |n| n.get()) }),
    );
    all.insert("memory".into(), memory);
    let mut tables = Vec::new();
    for db in state.store.databases() {
        let (used, capacity) = db.usage()?;
        tables.push(json!({
            "database": db.name(),
            "size": db.disk_size(),
            "used": used,
            "capacity": capacity,
            // Open read transactions pin the pages they read: a number that stays up
            // while the file grows points at a reader that never finishes.
            "read_transactions": db.open_snapshots(),
        }));
    }
    all.insert("table_size".into(), Value::Array(tables));
    let port = |p: &crate::Port| {
        json!({
            "open": p.open_connections(),
            "max": p.max_connections(),
            "refused": p.refused_connections(),
        })
    };
    let stats = &state.stats;
    let workers = state.store.workers();
    let active = workers.list();
    let subscriptions = active
        .iter()
        .filter(|w| w.name.starts_with("subscription/"))
        .count();
    all.insert(
        "connections".into(),
        json!({
            "operations_api": port(&stats.ops),
            "http": port(&stats.http),
            "mqtt": port(&stats.mqtt),
            "subscriptions": subscriptions,
            "body_bytes_in_flight": state.body_budget.in_use(),
        }),
    );
    if let Some(mqtt) = &state.mqtt {
        let broker = mqtt.stats();
        all.insert(
            "mqtt".into(),
            json!({
                "sessions": broker.sessions,
                "connected": broker.connected,
                "queued_messages": broker.queued,
                "dropped_messages": broker.dropped,
            }),
        );
    }
    // The node's background work: what runs now, and how much has ended (and failed).
    let totals = workers.totals();
    all.insert(
        "workers".into(),
        json!({
            "active": active,
            "finished": totals.finished,
            "failed": totals.failed,
        }),
    );
    if let Some(wanted) = wanted {
        all.retain(|k, _| wanted.contains(k));
    }
    Ok(Reply::Json(Value::Object(all)))
}

/// Total and free memory of the machine and this process's resident size, from /proc.
fn memory_info() -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    json!({
        "total": field("MemTotal:"),
        "free": field("MemFree:"),
        "available": field("MemAvailable:"),
        "rss": rss,
    })
}
