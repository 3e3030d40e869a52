//! Concurrency: many clients insert, update and upsert shared and private keys at once.
//! Every request succeeds, and each key ends with the last write the transaction log
//! shows for it — a write that was acknowledged to its client.
//!
//! Seeded: set `SHOAL_TEST_SEED` to replay a run; the seed is printed on failure.

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, seed, start};

const CLIENTS: usize = 16;
const WRITES_PER_CLIENT: usize = 60;
const SHARED_KEYS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_acknowledged_write_wins_per_key() {
    let seed = seed("last_acknowledged_write_wins_per_key");
    let node = start("conc").await.unwrap();
    node.op_ok(
        json!({"operation": "create_table", "database": "dev", "table": "kv", "primary_key": "id"}),
    )
    .await
    .unwrap();
    // The shared keys exist up front so that updates of them always apply.
    let seed_records: Vec<Value> = (0..SHARED_KEYS)
        .map(|k| json!({"id": k, "tag": "initial"}))
        .collect();
    node.op_ok(
        json!({"operation": "insert", "database": "dev", "table": "kv", "records": seed_records}),
    )
    .await
    .unwrap();

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = node.client().clone();
            let url = node.ops_url();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 + 1));
                let mut acked = HashSet::new();
                for n in 0..WRITES_PER_CLIENT {
                    let tag = format!("c{c}-w{n}");
                    let shared = rng.random_bool(0.5);
                    let key = if shared {
                        json!(rng.random_range(0..SHARED_KEYS))
                    } else {
                        json!(format!("c{c}-{}", n / 3))
                    };
                    let operation = match (shared, rng.random_range(0..3)) {
                        (true, 0) => "update",
                        (false, 0) => "insert",
                        _ => "upsert",
                    };
                    let body = json!({
                        "operation": operation, "database": "dev", "table": "kv",
                        "records": [{"id": key, "tag": tag, "n": n}],
                    });
                    let response = client
                        .post(&url)
                        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        response.status().is_success(),
                        "seed {seed}: {operation} failed: {}",
                        response.status()
                    );
                    let answer: Value = response.json().await.unwrap();
                    let written = answer
                        .get("inserted_hashes")
                        .or(answer.get("update_hashes"))
                        .or(answer.get("upserted_hashes"))
                        .unwrap();
                    if written.as_array().unwrap().contains(&key) {
                        acked.insert(tag);
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }

    // Commit order is the transaction log's order: the last entry per key must be what
    // the key holds now, and it must have been acknowledged.
    let log = node
        .op_ok(json!({"operation": "read_transaction_log", "database": "dev", "table": "kv"}))
        .await
        .unwrap();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for entry in log.as_array().unwrap() {
        for record in entry["records"].as_array().unwrap() {
            last.insert(
                record["id"].to_string(),
                record["tag"].as_str().unwrap().to_owned(),
            );
        }
    }
    let all = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "kv", "search_attribute": "id", "search_value": "*"}))
        .await
        .unwrap();
    let now: BTreeMap<String, String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].to_string(), r["tag"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        now, last,
        "seed {seed}: final state is the last logged write per key"
    );
    for (key, tag) in &now {
        assert!(
            tag == "initial" || acked.contains(tag),
            "seed {seed}: {key} holds unacknowledged {tag}"
        );
    }
    let writes: usize = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["records"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        writes,
        acked.len() + SHARED_KEYS as usize,
        "seed {seed}: every acknowledged write is logged once"
    );
}
