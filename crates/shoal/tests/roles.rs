//! Users and roles over the Operations API, answered as Harper answers: `add_role`,
//! `alter_role`, `drop_role`, `list_roles` with Harper's permission checks and report;
//! `add_user` / `alter_user` naming roles that must exist; `list_users` and `user_info`
//! that never show a password hash; the last super user kept; and roles that replicate.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_USER, Node, assert_error, assert_super_user_only, cluster, create_table, insert,
    start, strip_timestamps, wait_until,
};

const BOB: (&str, &str) = ("bob", "bob-password");

/// Harper's documented example role, on `dev.dog`.
fn developer_permission() -> Value {
    json!({
        "super_user": false,
        "structure_user": false,
        "dev": {"tables": {"dog": {
            "read": true, "insert": true, "update": true, "delete": false,
            "attribute_permissions": [
                {"attribute_name": "name", "read": true, "insert": true, "update": true}
            ]
        }}}
    })
}

/// A node with `dev.dog` whose attributes (`id`, `name`, `owner`) are known.
async fn node_with_dogs(name: &str) -> anyhow::Result<Node> {
    let node = start(name).await?;
    create_table(&node, "dog").await?;
    insert(
        &node,
        "dog",
        json!([{"id": 1, "name": "Rex", "owner": "ann"}]),
    )
    .await?;
    Ok(node)
}

/// `list_roles` without timestamps.
async fn roles(node: &Node) -> anyhow::Result<Vec<Value>> {
    let roles = node.op_ok(json!({"operation": "list_roles"})).await?;
    Ok(roles
        .as_array()
        .map(|roles| roles.iter().map(strip_timestamps).collect())
        .unwrap_or_default())
}

/// Every stored timestamp of an answer is there, and nothing else was added.
fn assert_stamped(body: &Value) {
    for stamp in ["__createdtime__", "__updatedtime__"] {
        assert!(body[stamp].is_number(), "{stamp} in {body}");
    }
}

/// The role operations: the built-in roles, a role with table and attribute grants added
/// and altered, duplicates and malformed permissions refused with Harper's answers.
#[tokio::test]
async fn roles_are_added_altered_and_listed() -> anyhow::Result<()> {
    let node = node_with_dogs("roles-ops").await?;
    assert_eq!(
        roles(&node).await?,
        vec![
            json!({"id": "cluster_user", "role": "cluster_user", "permission": {"cluster_user": true}}),
            json!({"id": "super_user", "role": "super_user", "permission": {"super_user": true}}),
        ]
    );

    let added = node
        .op_ok(json!({"operation": "add_role", "role": "developer", "permission": developer_permission()}))
        .await?;
    assert_stamped(&added);
    assert_eq!(
        strip_timestamps(&added),
        json!({"id": "developer", "role": "developer", "permission": developer_permission()})
    );
    assert_error(
        &node
            .ops(json!({"operation": "add_role", "role": "developer", "id": "dev-2", "permission": {}}))
            .await?,
        409,
        "A role with name 'developer' already exists",
    );

    // Every problem at once, grouped as Harper groups them.
    let bad = json!({
        "operation": "add_role", "role": "broken", "colour": "red",
        "permission": {
            "super_user": "yes",
            "prod": {"tables": {}},
            "dev": {"tables": {
                "cat": {},
                "dog": {"read": false, "insert": true, "update": 1, "delete": false,
                        "attribute_permissions": [
                            {"attribute_name": "name", "read": true, "insert": true, "update": false},
                            {"attribute_name": "ghost", "read": true, "insert": true, "update": true}
                        ]}
            }}
        }
    });
    assert_eq!(
        node.ops(bad).await?,
        (
            400,
            json!({
                "error": "Errors in the role permissions JSON provided",
                "main_permissions": [
                    "Invalid key in JSON body - 'colour'",
                    "Value for 'super_user' permission must be a boolean",
                    "database 'prod' does not exist",
                    "Table 'dev.cat' does not exist"
                ],
                "schema_permissions": {"dev_dog": [
                    "Table UPDATE permission must be a boolean",
                    "Invalid attribute 'ghost' in 'attribute_permissions'",
                    "You have a conflict with TABLE permissions for 'dev.dog' being false and ATTRIBUTE permissions being true"
                ]}
            })
        )
    );
    assert_eq!(
        node.ops(json!({"operation": "add_role", "role": "boss", "permission": {"super_user": true, "dev": {"tables": {}}}}))
            .await?,
        (
            400,
            json!({
                "error": "Errors in the role permissions JSON provided",
                "main_permissions": ["Roles with 'super_user' set to true cannot have other permissions set."],
                "schema_permissions": {}
            })
        )
    );
    assert_eq!(roles(&node).await?.len(), 3, "nothing half-written");

    // alter_role replaces the permission and may rename.
    let narrowed = json!({"super_user": false, "dev": {"tables": {"dog": {
        "read": true, "insert": false, "update": false, "delete": false,
        "attribute_permissions": [
            {"attribute_name": "name", "read": true, "insert": false, "update": false},
            {"attribute_name": "owner", "read": false, "insert": false, "update": false}
        ]
    }}}});
    let altered = node
        .op_ok(json!({"operation": "alter_role", "id": "developer", "role": "viewer", "permission": narrowed}))
        .await?;
    assert_eq!(
        strip_timestamps(&altered),
        json!({"id": "developer", "role": "viewer", "permission": narrowed})
    );
    assert!(roles(&node).await?.contains(&strip_timestamps(&altered)));
    assert_error(
        &node
            .ops(json!({"operation": "alter_role", "id": "nobody", "permission": {}}))
            .await?,
        400,
        "Invalid role id",
    );
    assert_eq!(
        node.ops(json!({"operation": "alter_role", "role": "viewer"}))
            .await?
            .1["main_permissions"],
        json!(["Id can't be blank", "Permission can't be blank"])
    );
    Ok(())
}

/// Users name roles that must exist, and store the role's id; nothing shows a password
/// hash; a role in use cannot be dropped; a non-super user may only ask about itself.
#[tokio::test]
async fn users_name_existing_roles_and_never_show_hashes() -> anyhow::Result<()> {
    let node = node_with_dogs("roles-users").await?;
    node.op_ok(json!({"operation": "add_role", "role": "developer", "id": "dev-role", "permission": developer_permission()}))
        .await?;
    let add_bob = |role: &str| json!({"operation": "add_user", "username": BOB.0, "password": BOB.1, "role": role, "active": true});

    assert_error(
        &node.ops(add_bob("ghost")).await?,
        404,
        "ghost role not found",
    );
    assert_error(
        &node
            .ops(json!({"operation": "add_user", "username": "carl", "password": "pw"}))
            .await?,
        400,
        "Role can't be blank,Active can't be blank",
    );
    let users = node.op_ok(json!({"operation": "list_users"})).await?;
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");

    assert_eq!(
        node.op_ok(add_bob("developer")).await?,
        json!({"message": "bob successfully added"})
    );
    let stored = node
        .op_ok(json!({"operation": "search_by_id", "database": "system", "table": "hdb_user", "ids": [BOB.0], "get_attributes": ["role"]}))
        .await?;
    assert_eq!(
        stored,
        json!([{"role": "dev-role"}]),
        "the role's id is stored"
    );

    // Bob asks about himself: his record without the hash, his role expanded.
    let info = node
        .ops_as(BOB.0, BOB.1, json!({"operation": "user_info"}))
        .await?;
    assert_eq!(info.0, 200, "{info:?}");
    assert_stamped(&info.1);
    let mut expected_role =
        json!({"id": "dev-role", "role": "developer", "permission": developer_permission()});
    assert_eq!(
        strip_timestamps(&info.1),
        json!({"username": "bob", "active": true, "role": info.1["role"].clone()})
    );
    assert_eq!(strip_timestamps(&info.1["role"]), expected_role);

    // list_users: every user, no hashes, roles expanded with the system tables Harper shows.
    let users = node.op_ok(json!({"operation": "list_users"})).await?;
    let text = users.to_string();
    assert!(
        !text.contains("password") && !text.contains("$argon2"),
        "{text}"
    );
    let names: Vec<&str> = users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, [DEFAULT_ADMIN_USER, "bob"]);
    let bob = &users[1];
    let system_grant = json!({"read": false, "insert": false, "update": false, "delete": false, "attribute_permissions": []});
    assert_eq!(
        bob["role"]["permission"]["system"]["tables"]["hdb_user"],
        system_grant
    );
    expected_role["permission"]["system"] = bob["role"]["permission"]["system"].clone();
    assert_eq!(strip_timestamps(&bob["role"]), expected_role);
    assert_eq!(
        users[0]["role"]["permission"]["system"]["tables"]["hdb_role"]["read"],
        true
    );

    // What only a super user may do, bob may not.
    for request in [
        json!({"operation": "list_users"}),
        json!({"operation": "list_roles"}),
        json!({"operation": "add_role", "role": "mine", "permission": {"super_user": true}}),
        json!({"operation": "alter_role", "id": "dev-role", "permission": {"super_user": true}}),
        json!({"operation": "drop_role", "id": "dev-role"}),
    ] {
        let operation = request["operation"].as_str().unwrap_or_default().to_owned();
        assert_super_user_only(&node.ops_as(BOB.0, BOB.1, request).await?, &operation);
    }

    // The role bob has cannot go; once he is moved (by name) it can.
    let drop = json!({"operation": "drop_role", "id": "dev-role"});
    assert_error(
        &node.ops(drop.clone()).await?,
        409,
        "Cannot drop role developer as it has active user(s) tied to this role",
    );
    assert_error(
        &node
            .ops(json!({"operation": "alter_user", "username": BOB.0, "role": "ghost"}))
            .await?,
        404,
        "Update failed.  Requested 'ghost' role not found.",
    );
    let altered = node
        .op_ok(json!({"operation": "alter_user", "username": BOB.0, "role": "super_user"}))
        .await?;
    assert_eq!(altered["message"], "updated 1 of 1 records");
    assert_eq!(altered["update_hashes"], json!([BOB.0]));
    let info = node
        .ops_as(BOB.0, BOB.1, json!({"operation": "user_info"}))
        .await?;
    assert_eq!(info.1["role"]["id"], "super_user", "{info:?}");
    assert_eq!(
        node.op_ok(drop.clone()).await?,
        json!({"message": "developer successfully deleted"})
    );
    assert_error(&node.ops(drop).await?, 404, "Role not found");
    Ok(())
}

/// Nothing may leave the node without an active super user.
#[tokio::test]
async fn the_last_super_user_cannot_be_removed() -> anyhow::Result<()> {
    let node = start("roles-last").await?;
    let last = "Rejected: this change would leave the instance with no active super_user. Grant super_user to another active user first.";
    node.op_ok(json!({"operation": "add_role", "role": "reader", "permission": {}}))
        .await?;
    for request in [
        json!({"operation": "drop_user", "username": DEFAULT_ADMIN_USER}),
        json!({"operation": "alter_user", "username": DEFAULT_ADMIN_USER, "active": false}),
        json!({"operation": "alter_user", "username": DEFAULT_ADMIN_USER, "role": "reader"}),
        json!({"operation": "alter_role", "id": "super_user", "permission": {}}),
    ] {
        assert_error(&node.ops(request).await?, 409, last);
    }
    assert_error(
        &node
            .ops(json!({"operation": "drop_role", "id": "super_user"}))
            .await?,
        409,
        "Cannot drop role super_user as it has active user(s) tied to this role",
    );
    // The admin still is one.
    let info = node.op_ok(json!({"operation": "user_info"})).await?;
    assert_eq!(info["role"]["permission"]["super_user"], true);
    assert_eq!(info["active"], true);
    Ok(())
}

/// A role and a user added on node A reach node B: both listed there, the user logs in
/// there with the role, and a change to the role on A applies on B.
#[tokio::test]
async fn roles_and_users_replicate() -> anyhow::Result<()> {
    let members = cluster::start_cluster(&["ra", "rb"], 111, false, &[]).await?;
    cluster::prepare(&members).await?;
    let (a, b) = (&members[0].node, &members[1].node);
    insert(a, cluster::TABLE, json!([{"id": "k1", "value": 1}])).await?;
    let grant = |read: bool| {
        json!({"dev": {"tables": {"kv": {
            "read": true, "insert": false, "update": false, "delete": false,
            "attribute_permissions": [
                {"attribute_name": "value", "read": read, "insert": false, "update": false}
            ]
        }}}})
    };
    a.op_ok(json!({"operation": "add_role", "role": "kv_reader", "permission": grant(true)}))
        .await?;
    a.op_ok(json!({"operation": "add_user", "username": "carol", "password": "carol-pw", "role": "kv_reader", "active": true}))
        .await?;

    let deadline = Duration::from_secs(30);
    wait_until(deadline, "the role and the user reach b", async || {
        let roles = b.op_ok(json!({"operation": "list_roles"})).await?;
        let users = b.op_ok(json!({"operation": "list_users"})).await?;
        Ok(roles.to_string().contains("kv_reader") && users.to_string().contains("carol"))
    })
    .await?;
    let on_b = roles(b).await?;
    assert!(
        on_b.contains(&json!({"id": "kv_reader", "role": "kv_reader", "permission": grant(true)})),
        "{on_b:?}"
    );
    let info = b
        .ops_as("carol", "carol-pw", json!({"operation": "user_info"}))
        .await?;
    assert_eq!(info.0, 200, "{info:?}");
    assert_eq!(info.1["username"], "carol");
    assert_eq!(
        strip_timestamps(&info.1["role"]),
        json!({"id": "kv_reader", "role": "kv_reader", "permission": grant(true)})
    );

    let read_on_b = async || {
        let search = json!({"operation": "search_by_id", "database": "dev", "table": "kv",
            "ids": ["k1"], "get_attributes": ["*"]});
        let (status, rows) = b.ops_as("carol", "carol-pw", search).await?;
        anyhow::ensure!(status == 200, "carol's read on b: {status} {rows}");
        Ok::<_, anyhow::Error>(strip_timestamps(&rows[0]))
    };
    assert_eq!(read_on_b().await?["value"], json!(1));

    a.op_ok(json!({"operation": "alter_role", "id": "kv_reader", "permission": grant(false)}))
        .await?;
    wait_until(deadline, "the altered role reaches b", async || {
        let info = b
            .ops_as("carol", "carol-pw", json!({"operation": "user_info"}))
            .await?;
        Ok(info.1["role"]["permission"] == grant(false))
    })
    .await?;
    // The change made on a decides what carol reads on b.
    let row = read_on_b().await?;
    assert!(row.get("value").is_none(), "{row}");
    Ok(())
}

/// Harper's `cluster_user` role authenticates a join, and may do nothing else; a role
/// without it (or super_user) cannot authenticate one.
#[tokio::test]
async fn a_cluster_user_may_join_and_nothing_else() -> anyhow::Result<()> {
    let a = cluster::Member::start("cj-a", "127.0.113.1", false, &[]).await?;
    let b = cluster::Member::start("cj-b", "127.0.113.2", false, &[]).await?;
    create_table(&b.node, "kv").await?;
    b.node
        .op_ok(
            json!({"operation": "add_user", "username": "repl", "password": "repl-pw",
            "role": "cluster_user", "active": true}),
        )
        .await?;
    b.node
        .op_ok(
            json!({"operation": "add_role", "role": "kv_all", "permission": {"dev": {"tables":
            {"kv": {"read": true, "insert": true, "update": true, "delete": true,
                "attribute_permissions": []}}}}}),
        )
        .await?;
    b.node
        .op_ok(
            json!({"operation": "add_user", "username": "app", "password": "app-pw",
            "role": "kv_all", "active": true}),
        )
        .await?;
    for op in [
        json!({"operation": "search_by_id", "database": "dev", "table": "kv", "ids": [1]}),
        json!({"operation": "insert", "database": "dev", "table": "kv", "records": [{"id": 1}]}),
        json!({"operation": "cluster_status"}),
    ] {
        let (status, body) = b.node.ops_as("repl", "repl-pw", op.clone()).await?;
        assert_eq!(status, 403, "{op} by a cluster_user: {body}");
    }

    let as_user = |user: &str, password: &str| {
        cluster::add_node_request(
            &b.url(),
            json!({"authorization": {"username": user, "password": password}}),
        )
    };
    let (status, body) = a.node.ops(as_user("app", "app-pw")).await?;
    assert_ne!(status, 200, "a data role authenticated a join: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cluster_user"),
        "{body}"
    );
    let joined = a.node.op_ok(as_user("repl", "repl-pw")).await?;
    assert_eq!(
        joined["message"],
        json!(format!("Successfully added '{}' to the cluster", b.name()))
    );
    Ok(())
}
