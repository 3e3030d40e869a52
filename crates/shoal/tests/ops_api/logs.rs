//! The transaction and audit logs, and concurrent writes all applied and logged.

use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, assert_error, create_table, ids, insert,
    nums, rows, start, strip_timestamps,
};

use crate::helpers::{describe, keys, merged, num, sorted_keys, txn_time};

#[tokio::test]
async fn transaction_and_audit_logs() -> anyhow::Result<()> {
    let node = start("logs").await?;
    create_table(&node, "dog").await?;
    create_table(&node, "cat").await?;

    let t1 = txn_time(
        &insert(
            &node,
            "dog",
            json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]),
        )
        .await?,
    );
    // Writes to another table never show up in dog's log.
    insert(&node, "cat", json!([{"id": 1, "name": "Tom"}])).await?;
    let t2 = txn_time(
        &node
            .op_ok(json!({"operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "name": "c"}]}))
            .await?,
    );
    let t3 = txn_time(
        &node
            .op_ok(json!({"operation": "upsert", "database": "dev", "table": "dog", "records": [{"id": 3, "name": "d"}]}))
            .await?,
    );
    let t4 = txn_time(
        &node
            .op_ok(json!({"operation": "delete", "database": "dev", "table": "dog", "ids": [2]}))
            .await?,
    );
    let all = [t1, t2, t3, t4];
    // (Distinct timestamps are checked by `concurrent_writes_are_all_applied_and_logged`;
    // the windows below hold either way.)
    // Log entries between two times, inclusive, as the timestamps the writes reported.
    let window = |from: f64, to: f64| -> Vec<f64> {
        all.iter()
            .copied()
            .filter(|t| (from..=to).contains(t))
            .collect()
    };

    let read_log = |extra: Value| {
        merged(
            json!({"operation": "read_transaction_log", "database": "dev", "table": "dog"}),
            extra,
        )
    };
    let stamps =
        |body: &Value| -> Vec<f64> { rows(body).iter().map(|e| num(&e["timestamp"])).collect() };

    let log = node.op_ok(read_log(json!({}))).await?;
    let entries = rows(&log);
    assert_eq!(entries.len(), 4, "{log}");
    let column = |name: &str| entries.iter().map(|e| e[name].clone()).collect::<Vec<_>>();
    assert_eq!(
        column("operation"),
        [
            json!("insert"),
            json!("update"),
            json!("upsert"),
            json!("delete")
        ]
    );
    assert_eq!(column("user"), vec![json!("admin"); 4]);
    assert_eq!(stamps(&log), [t1, t2, t3, t4]);
    assert_eq!(
        column("hash_values"),
        [json!([1, 2]), json!([1]), json!([3]), json!([2])]
    );
    // Insert entries hold whole records; update entries the changed fields, the key and
    // __updatedtime__; a delete entry holds no records.
    let records = |i: usize| rows(&entries[i]["records"]).clone();
    assert_eq!(
        records(0).iter().map(strip_timestamps).collect::<Vec<_>>(),
        [json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"})]
    );
    for r in records(0) {
        assert_eq!(
            (num(&r["__createdtime__"]), num(&r["__updatedtime__"])),
            (t1, t1)
        );
    }
    let update = &records(1)[0];
    assert_eq!(sorted_keys(update), ["__updatedtime__", "id", "name"]);
    assert_eq!(strip_timestamps(update), json!({"id": 1, "name": "c"}));
    assert_eq!(num(&update["__updatedtime__"]), t2);
    let upsert = &records(2)[0];
    assert_eq!(strip_timestamps(upsert), json!({"id": 3, "name": "d"}));
    assert_eq!(num(&upsert["__createdtime__"]), t3);
    assert!(
        entries[3].get("records").is_none_or(|r| r == &json!([])),
        "delete entry: {}",
        entries[3]
    );

    // Time windows (inclusive) and limit.
    let body = node.op_ok(read_log(json!({"from": t2}))).await?;
    assert_eq!(stamps(&body), window(t2, f64::MAX));
    let body = node.op_ok(read_log(json!({"to": t2}))).await?;
    assert_eq!(stamps(&body), window(0.0, t2));
    let body = node.op_ok(read_log(json!({"from": t2, "to": t3}))).await?;
    assert_eq!(stamps(&body), window(t2, t3));
    let body = node.op_ok(read_log(json!({"limit": 2}))).await?;
    assert_eq!(stamps(&body), [t1, t2]);
    let body = node.op_ok(read_log(json!({"from": t4 + 1.0}))).await?;
    assert_eq!(body, json!([]));

    // read_audit_log.
    let audit = |search: Value| {
        merged(
            json!({"operation": "read_audit_log", "database": "dev", "table": "dog"}),
            search,
        )
    };
    let body = node.op_ok(audit(json!({}))).await?;
    assert_eq!(stamps(&body), [t1, t2, t3, t4]);
    for entry in rows(&body) {
        assert_eq!(entry["user_name"], "admin", "{entry}");
    }
    assert_eq!(
        rows(&body)
            .iter()
            .map(|e| e["hash_values"].clone())
            .collect::<Vec<_>>(),
        [json!([1, 2]), json!([1]), json!([3]), json!([2])]
    );
    let body = node
        .op_ok(audit(
            json!({"search_type": "timestamp", "search_values": [t3]}),
        ))
        .await?;
    assert_eq!(
        stamps(&body),
        window(t3, f64::MAX),
        "one timestamp: everything from it on"
    );
    let body = node
        .op_ok(audit(
            json!({"search_type": "timestamp", "search_values": [t1, t2]}),
        ))
        .await?;
    assert_eq!(stamps(&body), window(t1, t2));

    let body = node
        .op_ok(audit(
            json!({"search_type": "username", "search_values": ["admin"]}),
        ))
        .await?;
    assert_eq!(keys(&body), ["admin"]);
    assert_eq!(stamps(&body["admin"]), [t1, t2, t3, t4]);
    let body = node
        .op_ok(audit(
            json!({"search_type": "username", "search_values": ["nobody"]}),
        ))
        .await?;
    assert_eq!(body, json!({}));

    let body = node
        .op_ok(audit(
            json!({"search_type": "hash_value", "search_values": [2, 3]}),
        ))
        .await?;
    assert_eq!(sorted_keys(&body), ["2", "3"]);
    let operations = |list: &Value| {
        rows(list)
            .iter()
            .map(|e| e["operation"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(operations(&body["2"]), [json!("insert"), json!("delete")]);
    assert_eq!(operations(&body["3"]), [json!("upsert")]);
    assert_eq!(stamps(&body["2"]), [t1, t4]);
    let body = node
        .op_ok(audit(
            json!({"search_type": "hash_value", "search_values": [1]}),
        ))
        .await?;
    assert_eq!(keys(&body), ["1"]);
    assert_eq!(operations(&body["1"]), [json!("insert"), json!("update")]);
    let insert_entry = &body["1"][0];
    // Per record, an entry found by hash_value is about that record only
    // (`hash_values: [1]`, records of id 1), not the whole transaction.
    assert_eq!(
        insert_entry
            .get("hash_values")
            .cloned()
            .unwrap_or(json!([1])),
        json!([1]),
        "read_audit_log hash_value 1: hash_values of the insert entry"
    );
    assert_eq!(
        ids(&insert_entry["records"]),
        nums(&[1]),
        "read_audit_log hash_value 1: ids of the insert entry's records"
    );

    let bogus = node
        .ops(audit(json!({"search_type": "bogus", "search_values": [1]})))
        .await?;
    assert_error(&bogus, 400, "Invalid searchType 'bogus'");
    for op in ["read_transaction_log", "read_audit_log"] {
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "nope"}))
            .await?;
        assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    }

    // A table created again under a dropped table's name has a history of its own.
    node.op_ok(json!({"operation": "drop_table", "database": "dev", "table": "dog"}))
        .await?;
    create_table(&node, "dog").await?;
    let log = node.op_ok(read_log(json!({}))).await?;
    let audit_log = node.op_ok(audit(json!({}))).await?;
    // The dropped table's log entries are not reported for the new table.
    assert_eq!(log, json!([]), "read_transaction_log of a re-created table");
    assert_eq!(audit_log, json!([]), "read_audit_log of a re-created table");
    Ok(())
}

/// Sends every operation at once, as the admin; the answers come back in request order.
async fn concurrently(node: &Node, ops: Vec<Value>) -> anyhow::Result<Vec<(u16, Value)>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, op) in ops.into_iter().enumerate() {
        let request = node
            .client()
            .post(node.ops_url())
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
            .json(&op);
        set.spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((i, status, response.json::<Value>().await?))
        });
    }
    let mut answers = vec![(0, Value::Null); set.len()];
    while let Some(joined) = set.join_next().await {
        let (i, status, body) = joined??;
        answers[i] = (status, body);
    }
    Ok(answers)
}

#[tokio::test]
async fn concurrent_writes_are_all_applied_and_logged() -> anyhow::Result<()> {
    let node = start("concurrent").await?;
    create_table(&node, "dog").await?;
    const N: usize = 32;
    let ops = (1..=N)
        .map(|i| json!({"operation": "insert", "database": "dev", "table": "dog", "records": [{"id": i, "n": i}]}))
        .collect();
    let answers = concurrently(&node, ops).await?;
    let mut times = Vec::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["inserted_hashes"], json!([i + 1]), "{body}");
        times.push(txn_time(body));
    }
    assert_eq!(describe(&node, "dog").await?["record_count"], N);
    let read_log = |from: f64, to: f64| json!({"operation": "read_transaction_log", "database": "dev", "table": "dog", "from": from, "to": to});
    let log = node.op_ok(read_log(0.0, f64::MAX)).await?;
    assert_eq!(rows(&log).len(), N, "one log entry per request");
    let logged: Vec<f64> = rows(&log).iter().map(|e| num(&e["timestamp"])).collect();
    let mut in_order = times.clone();
    in_order.sort_by(f64::total_cmp);
    assert_eq!(logged, in_order, "the log is in timestamp order");

    let mut distinct = times.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    // Each transaction gets its own timestamp (the spec groups records into one log
    // entry by timestamp), even for writes committed in the same millisecond.
    assert_eq!(
        distinct.len(),
        N,
        "distinct txn_time values among concurrent inserts"
    );
    let mut single = 0;
    for t in &times {
        let entries = node.op_ok(read_log(*t, *t)).await?;
        if rows(&entries).len() == 1 {
            single += 1;
        }
    }
    // So a from/to window of one transaction's timestamp holds exactly one entry.
    assert_eq!(single, N, "one-timestamp windows holding exactly one entry");
    Ok(())
}
