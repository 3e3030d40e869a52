//! Operations API helpers for the test tables: creating them and filling them.

use serde_json::{Value, json};

use crate::Node;

/// Creates `dev.<table>` with primary key `id`.
pub async fn create_table(node: &Node, table: &str) -> anyhow::Result<()> {
    create_table_in(node, "dev", table).await
}

/// Creates `<database>.<table>` with primary key `id`.
pub async fn create_table_in(node: &Node, database: &str, table: &str) -> anyhow::Result<()> {
    node.op_ok(json!({
        "operation": "create_table", "database": database, "table": table, "primary_key": "id"
    }))
    .await?;
    Ok(())
}

/// Inserts `records` into `dev.<table>` and returns the answer.
pub async fn insert(node: &Node, table: &str, records: Value) -> anyhow::Result<Value> {
    node.op_ok(json!({
        "operation": "insert", "database": "dev", "table": table, "records": records
    }))
    .await
}
