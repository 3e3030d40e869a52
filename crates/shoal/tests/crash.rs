//! Crash safety: clients write continuously, the node is SIGKILLed mid-stream, and after
//! a restart every acknowledged write is there and the store opens cleanly.
//!
//! Seeded: set `SHOAL_TEST_SEED` to replay a run; the seed is printed on failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, seed, start};

const CLIENTS: usize = 8;
const ROUNDS: usize = 3;

/// What one client knows about its own keys: the last acknowledged value and the value
/// of a write that was in flight when the node died (which may or may not have landed).
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, u64>,
    in_flight: Option<(String, u64)>,
}

/// What the store must hold for a key: the acknowledged value, or a write that was in
/// flight at the kill.
#[derive(Debug, Default)]
struct Expect {
    acked: Option<u64>,
    maybe: Option<u64>,
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let response = client
        .post(url)
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .json(body)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Writes until the node stops answering: inserts of new keys and upserts of earlier ones.
async fn client_loop(
    id: usize,
    seed: u64,
    client: reqwest::Client,
    url: String,
    acks: Arc<AtomicUsize>,
) -> Ledger {
    let mut rng = StdRng::seed_from_u64(seed ^ id as u64);
    let mut ledger = Ledger::default();
    for n in 0u64.. {
        let key = if n > 0 && rng.random_bool(0.3) {
            format!("c{id}-{}", rng.random_range(0..n))
        } else {
            format!("c{id}-{n}")
        };
        let value = rng.random::<u32>() as u64;
        let body = json!({
            "operation": "upsert", "database": "dev", "table": "kv",
            "records": [{"id": key, "value": value, "pad": "x".repeat(rng.random_range(0..200))}],
        });
        ledger.in_flight = Some((key.clone(), value));
        match post(&client, &url, &body).await {
            Some(answer) => {
                assert_eq!(answer["upserted_hashes"], json!([key]), "seed {seed}");
                ledger.in_flight = None;
                ledger.acked.insert(key, value);
                acks.fetch_add(1, Ordering::Relaxed);
            }
            None => break,
        }
    }
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed = seed("acknowledged_writes_survive_sigkill");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut node = start("crash").await.unwrap();
    node.op_ok(
        json!({"operation": "create_table", "database": "dev", "table": "kv", "primary_key": "id"}),
    )
    .await
    .unwrap();
    let mut expected: BTreeMap<String, Expect> = BTreeMap::new();
    for round in 0..ROUNDS {
        let acks = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let client_seed = seed.wrapping_add((round * CLIENTS + c) as u64);
                tokio::spawn(client_loop(
                    round * CLIENTS + c,
                    client_seed,
                    node.client().clone(),
                    node.ops_url(),
                    acks.clone(),
                ))
            })
            .collect();
        // Kill at a random point of the stream, chosen by acknowledged writes, not time.
        let target = rng.random_range(100..600);
        shoal_testkit::wait_until(
            std::time::Duration::from_secs(60),
            "writes acknowledged",
            async || Ok(acks.load(Ordering::Relaxed) >= target),
        )
        .await
        .unwrap();
        node.kill().await.unwrap();
        for c in clients {
            let ledger = c.await.unwrap();
            for (key, value) in ledger.acked {
                expected.insert(
                    key,
                    Expect {
                        acked: Some(value),
                        maybe: None,
                    },
                );
            }
            if let Some((key, value)) = ledger.in_flight {
                // Possibly committed before the kill, never acknowledged.
                expected.entry(key).or_default().maybe = Some(value);
            }
        }
        node.restart().await.unwrap();

        let ids: Vec<&String> = expected.keys().collect();
        let found = node
            .op_ok(json!({"operation": "search_by_id", "database": "dev", "table": "kv", "ids": ids, "get_attributes": ["id", "value"]}))
            .await
            .unwrap();
        let found: BTreeMap<String, u64> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["value"].as_u64().unwrap(),
                )
            })
            .collect();
        for (key, e) in &expected {
            match found.get(key) {
                Some(v) => assert!(
                    e.acked == Some(*v) || e.maybe == Some(*v),
                    "seed {seed} round {round}: {key} = {v}, expected {e:?}"
                ),
                None => assert!(
                    e.acked.is_none(),
                    "seed {seed} round {round}: acknowledged {key} lost"
                ),
            }
        }
        // Whatever landed is now the truth for the next round.
        expected = found
            .into_iter()
            .map(|(key, v)| {
                (
                    key,
                    Expect {
                        acked: Some(v),
                        maybe: None,
                    },
                )
            })
            .collect();
        eprintln!("round {round}: {} keys after restart", expected.len());
        let described = node
            .op_ok(json!({"operation": "describe_table", "database": "dev", "table": "kv"}))
            .await
            .unwrap();
        assert_eq!(
            described["record_count"].as_u64().unwrap() as usize,
            expected.len(),
            "seed {seed}: record count"
        );
    }
}
