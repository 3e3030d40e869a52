//! Roles and users with them, and Harper's answer when a role is refused.

use serde_json::{Value, json};

use crate::node::Node;

/// Harper's `error` when the permission check refuses a role.
pub const NOT_AUTHORIZED: &str =
    "This operation is not authorized due to role restrictions and/or invalid database items";

/// Adds a role through the operations API (Harper's `add_role`) with the admin's
/// credentials; the tables it names must exist.
pub async fn add_role(node: &Node, role: &str, permission: Value) -> anyhow::Result<Value> {
    node.op_ok(json!({"operation": "add_role", "role": role, "permission": permission}))
        .await
}

/// Adds an active user with `role` (which must exist) with the admin's credentials.
pub async fn add_user_with_role(
    node: &Node,
    username: &str,
    password: &str,
    role: &str,
) -> anyhow::Result<()> {
    node.op_ok(json!({
        "operation": "add_user", "username": username, "password": password,
        "role": role, "active": true,
    }))
    .await?;
    Ok(())
}

/// Asserts Harper's 403 refusal body, exactly: what the role lacks and what it may not see.
#[track_caller]
pub fn assert_denied(
    answer: &(u16, Value),
    unauthorized_access: Value,
    invalid_schema_items: Value,
) {
    let (status, body) = answer;
    assert_eq!(*status, 403, "status of {body}");
    let expected = json!({
        "error": NOT_AUTHORIZED,
        "unauthorized_access": unauthorized_access,
        "invalid_schema_items": invalid_schema_items,
    });
    assert_eq!(body, &expected, "refusal body");
}

/// Asserts the refusal of an operation only super users may ask for.
#[track_caller]
pub fn assert_super_user_only(answer: &(u16, Value), operation: &str) {
    let message = format!("Operation '{operation}' is restricted to 'super_user' roles");
    assert_denied(answer, json!([message]), json!([]));
}
