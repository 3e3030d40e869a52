//! Role permissions in every data and describe operation of the Operations API (issue #11,
//! items 2 and 6), on a real node over the wire, answered as Harper's `verifyPerms` and
//! `schemaDescribe` answer.
//!
//! Four kinds of role: one with table grants (`keeper`), one with attribute grants
//! (`clerk`), a structure user of `dev` (`builder`) and one that grants nothing (`nobody`).
//! Each data operation is allowed or refused with Harper's exact 403 body, and a read
//! afterwards proves that a refused write wrote nothing; searches check every attribute
//! they search and ask for, and return only what the role may read; `describe_*` show only
//! the databases, tables and attributes the role may see.

use serde_json::{Value, json};
use shoal_testkit::{
    Node, add_role, add_user_with_role, assert_denied, assert_super_user_only, start,
    strip_timestamps,
};

const PASSWORD: &str = "role-password";

/// A table-level refusal: what the role lacks on `dev.<table>`.
fn lacks(table: &str, permissions: &[&str]) -> Value {
    json!([{"schema": "dev", "table": table, "required_table_permissions": permissions,
            "required_attribute_permissions": []}])
}

/// An attribute-level refusal on `dev.dog`: each attribute with what it lacks.
fn lacks_attributes(attributes: &[(&str, &[&str])]) -> Value {
    let attributes: Vec<Value> = attributes
        .iter()
        .map(|(name, perms)| json!({"attribute_name": name, "required_permissions": perms}))
        .collect();
    json!([{"schema": "dev", "table": "dog", "required_table_permissions": [],
            "required_attribute_permissions": attributes}])
}

/// A node with `dev.dog` (two dogs with `name`, `age`, `owner`, `secret`), `dev.cat`,
/// `dev.bird` and `prod.vault`, and a user of each kind of role.
async fn node() -> anyhow::Result<Node> {
    let node = start("opsperm").await?;
    for (database, table) in [
        ("dev", "dog"),
        ("dev", "cat"),
        ("dev", "bird"),
        ("prod", "vault"),
    ] {
        node.op_ok(json!({"operation": "create_table", "database": database, "table": table, "primary_key": "id"}))
            .await?;
    }
    node.op_ok(
        json!({"operation": "insert", "database": "dev", "table": "dog", "records": [
            {"id": 1, "name": "Rex", "age": 3, "owner": "ann", "secret": "s1"},
            {"id": 2, "name": "Fido", "age": 5, "owner": "bob", "secret": "s2"},
        ]}),
    )
    .await?;
    for (database, table) in [("dev", "cat"), ("dev", "bird"), ("prod", "vault")] {
        node.op_ok(
            json!({"operation": "insert", "database": database, "table": table,
                          "records": [{"id": 1, "name": "one"}]}),
        )
        .await?;
    }
    let table = |read, insert, update, delete| {
        json!({"read": read, "insert": insert, "update": update, "delete": delete,
               "attribute_permissions": []})
    };
    add_role(
        &node,
        "keeper",
        json!({"super_user": false, "dev": {"tables": {
            "dog": table(true, true, false, false),
            "cat": table(false, true, false, true),
        }}}),
    )
    .await?;
    let attribute = |name, read, insert, update| json!({"attribute_name": name, "read": read, "insert": insert, "update": update});
    add_role(
        &node,
        "clerk",
        json!({"super_user": false, "dev": {"tables": {"dog": {
            "read": true, "insert": true, "update": true, "delete": false,
            "attribute_permissions": [
                attribute("name", true, true, true),
                attribute("age", true, false, false),
                attribute("owner", false, true, false),
                attribute("secret", false, false, false),
            ]
        }}}}),
    )
    .await?;
    add_role(
        &node,
        "builder",
        json!({"super_user": false, "structure_user": ["dev"]}),
    )
    .await?;
    add_role(&node, "nobody", json!({"super_user": false})).await?;
    for role in ["keeper", "clerk", "builder", "nobody"] {
        add_user_with_role(&node, role, PASSWORD, role).await?;
    }
    Ok(node)
}

/// Asks an operation as the user named for its role.
async fn as_role(node: &Node, role: &str, op: Value) -> (u16, Value) {
    node.ops_as(role, PASSWORD, op).await.unwrap()
}

/// The records of `database.table` with these ids, as the admin reads them (timestamps
/// left out).
async fn stored(node: &Node, database: &str, table: &str, ids: Value) -> Value {
    let rows = node
        .op_ok(
            json!({"operation": "search_by_id", "database": database, "table": table, "ids": ids}),
        )
        .await
        .unwrap();
    Value::Array(
        rows.as_array()
            .unwrap()
            .iter()
            .map(strip_timestamps)
            .collect(),
    )
}

/// Rows without timestamps, sorted by id.
fn sorted(rows: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = rows
        .as_array()
        .unwrap_or_else(|| panic!("not rows: {rows}"))
        .iter()
        .map(strip_timestamps)
        .collect();
    rows.sort_by_key(|row| row["id"].as_i64());
    rows
}

/// Table grants: each data operation needs its table permission; a table or database the
/// role has nothing on does not exist for it; a refused write writes nothing; logs and
/// structure changes stay with super users.
#[tokio::test]
async fn table_grants_decide_each_data_operation() {
    let node = node().await.unwrap();
    let keeper = |op| as_role(&node, "keeper", op);
    let dog = |op: &str, extra: Value| {
        let mut request = json!({"operation": op, "database": "dev", "table": "dog"});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };

    // Read and insert are granted on dog: whole records, every attribute.
    let (status, rows) = keeper(dog(
        "search_by_id",
        json!({"ids": [1], "get_attributes": ["*"]}),
    ))
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        sorted(&rows),
        [json!({"id": 1, "name": "Rex", "age": 3, "owner": "ann", "secret": "s1"})]
    );
    let (status, body) = keeper(dog(
        "insert",
        json!({"records": [{"id": 3, "name": "Max", "color": "red"}]}),
    ))
    .await;
    assert_eq!(
        (status, &body["inserted_hashes"]),
        (200, &json!([3])),
        "{body}"
    );

    // Update, upsert and delete are not: refused whole, nothing changed.
    let refusals = [
        (
            "update",
            json!({"records": [{"id": 1, "name": "Changed"}]}),
            vec!["update"],
        ),
        (
            "upsert",
            json!({"records": [{"id": 1, "name": "Changed"}, {"id": 9}]}),
            vec!["update"],
        ),
        ("delete", json!({"ids": [1, 2]}), vec!["delete"]),
    ];
    for (op, extra, missing) in refusals {
        assert_denied(
            &keeper(dog(op, extra)).await,
            lacks("dog", &missing),
            json!([]),
        );
    }
    assert_eq!(
        stored(&node, "dev", "dog", json!([1, 2, 9])).await,
        json!([{"id": 1, "name": "Rex", "age": 3, "owner": "ann", "secret": "s1"},
               {"id": 2, "name": "Fido", "age": 5, "owner": "bob", "secret": "s2"}])
    );

    // Cat: insert and delete, no read.
    let cat = json!({"database": "dev", "table": "cat"});
    let on_cat = |op: &str, extra: Value| {
        let mut request = cat.clone();
        request["operation"] = json!(op);
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    for read in [
        on_cat("search_by_id", json!({"ids": [1]})),
        on_cat(
            "search_by_value",
            json!({"search_attribute": "name", "search_value": "*"}),
        ),
        on_cat(
            "search_by_conditions",
            json!({"conditions": [{"search_attribute": "id", "search_type": "equals", "search_value": 1}]}),
        ),
    ] {
        assert_denied(&keeper(read).await, lacks("cat", &["read"]), json!([]));
    }
    assert_denied(
        &keeper(on_cat(
            "update",
            json!({"records": [{"id": 1, "name": "two"}]}),
        ))
        .await,
        lacks("cat", &["update"]),
        json!([]),
    );
    let (status, body) = keeper(on_cat("delete", json!({"ids": [1]}))).await;
    assert_eq!(
        (status, &body["deleted_hashes"]),
        (200, &json!([1])),
        "{body}"
    );
    assert_eq!(stored(&node, "dev", "cat", json!([1])).await, json!([]));

    // What the role has nothing on does not exist for it; a write there writes nothing.
    let bird =
        json!({"operation": "insert", "database": "dev", "table": "bird", "records": [{"id": 2}]});
    assert_denied(
        &keeper(bird).await,
        json!([]),
        json!(["Table 'dev.bird' does not exist"]),
    );
    let vault = json!({"operation": "upsert", "database": "prod", "table": "vault", "records": [{"id": 2}]});
    assert_denied(
        &keeper(vault).await,
        json!([]),
        json!(["database 'prod' does not exist"]),
    );
    let read_vault =
        json!({"operation": "search_by_id", "database": "prod", "table": "vault", "ids": [1]});
    assert_denied(
        &keeper(read_vault).await,
        json!([]),
        json!(["database 'prod' does not exist"]),
    );
    assert_eq!(stored(&node, "dev", "bird", json!([2])).await, json!([]));
    assert_eq!(stored(&node, "prod", "vault", json!([2])).await, json!([]));

    // Logs and structure stay with super users, even on a table the role may read.
    for op in [
        "read_transaction_log",
        "read_audit_log",
        "create_attribute",
        "drop_table",
    ] {
        let answer = keeper(dog(op, json!({"attribute": "x"}))).await;
        assert_super_user_only(&answer, op);
    }
    let table = json!({"operation": "create_table", "database": "dev", "table": "new", "primary_key": "id"});
    assert_super_user_only(&keeper(table).await, "create_table");
    let described = node
        .op_ok(json!({"operation": "describe_database", "database": "dev"}))
        .await
        .unwrap();
    assert!(described.get("new").is_none(), "{described}");
}

/// Attribute grants: a write is checked on every attribute any record sets and refused
/// whole, naming each failing attribute; a search is checked on every attribute it
/// searches, sorts by or asks for; `*` (or no `get_attributes`) returns what may be read.
#[tokio::test]
async fn attribute_grants_check_writes_and_filter_reads() {
    let node = node().await.unwrap();
    let clerk = |op| as_role(&node, "clerk", op);
    let write = |op: &str, records: Value| json!({"operation": op, "database": "dev", "table": "dog", "records": records});

    // Allowed: every attribute set may be set (the key is granted what any attribute is).
    let (status, body) = clerk(write(
        "insert",
        json!([{"id": 3, "name": "Max", "owner": "cy"}]),
    ))
    .await;
    assert_eq!(
        (status, &body["inserted_hashes"]),
        (200, &json!([3])),
        "{body}"
    );
    let (status, body) = clerk(write("update", json!([{"id": 1, "name": "Rexy"}]))).await;
    assert_eq!(
        (status, &body["update_hashes"]),
        (200, &json!([1])),
        "{body}"
    );

    // Refused whole: one record's attribute spoils the write of all of them.
    let refusals = [
        (
            write(
                "insert",
                json!([{"id": 4, "name": "Bo"}, {"id": 5, "name": "Al", "age": 1}]),
            ),
            lacks_attributes(&[("age", &["insert"])]),
            json!([]),
        ),
        (
            write("update", json!([{"id": 1, "owner": "zed", "age": 9}])),
            lacks_attributes(&[("owner", &["update"]), ("age", &["update"])]),
            json!([]),
        ),
        (
            write("upsert", json!([{"id": 2, "name": "F", "owner": "x"}])),
            lacks_attributes(&[("owner", &["update"])]),
            json!([]),
        ),
        // An attribute the role has nothing on, or one the table lacks, does not exist for it.
        (
            write(
                "insert",
                json!([{"id": 6, "secret": "x", "color": "red", "age": 2}]),
            ),
            lacks_attributes(&[("age", &["insert"])]),
            json!([
                "Attribute 'secret' does not exist on 'dev.dog'",
                "Attribute 'color' does not exist on 'dev.dog'"
            ]),
        ),
    ];
    for (request, unauthorized, invalid) in refusals {
        assert_denied(&clerk(request).await, unauthorized, invalid);
    }
    // Delete needs the table's permission only, which the role lacks.
    let delete = json!({"operation": "delete", "database": "dev", "table": "dog", "ids": [1]});
    assert_denied(&clerk(delete).await, lacks("dog", &["delete"]), json!([]));
    assert_eq!(
        stored(&node, "dev", "dog", json!([1, 2, 3, 4, 5, 6])).await,
        json!([{"id": 1, "name": "Rexy", "age": 3, "owner": "ann", "secret": "s1"},
               {"id": 2, "name": "Fido", "age": 5, "owner": "bob", "secret": "s2"},
               {"id": 3, "name": "Max", "owner": "cy"}])
    );

    // Reads: `*`, or no get_attributes, become the readable attributes.
    let readable =
        json!([{"id": 1, "name": "Rexy", "age": 3}, {"id": 2, "name": "Fido", "age": 5}]);
    let by_id = |extra: Value| {
        let mut request =
            json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": [1, 2]});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    for extra in [json!({"get_attributes": ["*"]}), json!({})] {
        let (status, rows) = clerk(by_id(extra)).await;
        assert_eq!(status, 200, "{rows}");
        assert_eq!(sorted(&rows), readable.as_array().unwrap().clone());
    }
    // Many ids stream their answer: filtered the same.
    let many: Vec<i64> = (1..=40).collect();
    let (status, rows) = clerk(
        json!({"operation": "search_by_id", "database": "dev", "table": "dog",
                                      "ids": many, "get_attributes": ["*"]}),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        sorted(&rows),
        [
            json!({"id": 1, "name": "Rexy", "age": 3}),
            json!({"id": 2, "name": "Fido", "age": 5}),
            json!({"id": 3, "name": "Max", "age": null})
        ]
    );
    let (status, rows) = clerk(by_id(json!({"get_attributes": ["name"]}))).await;
    assert_eq!(
        (status, rows),
        (200, json!([{"name": "Rexy"}, {"name": "Fido"}]))
    );
    assert_denied(
        &clerk(by_id(
            json!({"get_attributes": ["name", "owner", "secret"]}),
        ))
        .await,
        lacks_attributes(&[("owner", &["read"])]),
        json!(["Attribute 'secret' does not exist on 'dev.dog'"]),
    );

    let by_value = |attribute: &str, value: Value, get: Value| {
        json!({"operation": "search_by_value", "database": "dev", "table": "dog",
               "search_attribute": attribute, "search_value": value, "get_attributes": get})
    };
    let (status, rows) = clerk(by_value("age", json!(5), json!(["*"]))).await;
    assert_eq!(
        (status, rows),
        (200, json!([{"id": 2, "name": "Fido", "age": 5}]))
    );
    let (status, rows) = clerk(by_value("name", json!("*"), json!(["*"]))).await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(sorted(&rows).len(), 3);
    assert!(
        sorted(&rows)
            .iter()
            .all(|row| row.get("owner").is_none() && row.get("secret").is_none())
    );
    assert_denied(
        &clerk(by_value("owner", json!("ann"), json!(["name"]))).await,
        lacks_attributes(&[("owner", &["read"])]),
        json!([]),
    );
    assert_denied(
        &clerk(by_value("secret", json!("s1"), json!(["*"]))).await,
        json!([]),
        json!(["Attribute 'secret' does not exist on 'dev.dog'"]),
    );

    let by_conditions = |conditions: Value, get: Value| {
        json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
               "operator": "or", "conditions": conditions, "get_attributes": get})
    };
    let age_over_4 =
        json!({"search_attribute": "age", "search_type": "greater_than", "search_value": 4});
    let (status, rows) = clerk(by_conditions(json!([age_over_4]), json!(["*"]))).await;
    assert_eq!(
        (status, rows),
        (200, json!([{"id": 2, "name": "Fido", "age": 5}]))
    );
    let (status, rows) = clerk(by_conditions(json!([age_over_4]), json!(["id", "name"]))).await;
    assert_eq!((status, rows), (200, json!([{"id": 2, "name": "Fido"}])));
    // A condition on a forbidden attribute is refused, however deep it is nested.
    let nested = json!([age_over_4, {"operator": "and", "conditions": [
        {"search_attribute": "name", "search_type": "equals", "search_value": "Rexy"},
        {"conditions": [{"search_attribute": "owner", "search_type": "equals", "search_value": "ann"}]}
    ]}]);
    assert_denied(
        &clerk(by_conditions(nested, json!(["*"]))).await,
        lacks_attributes(&[("owner", &["read"])]),
        json!([]),
    );
    // Sorting by an attribute reveals its order: it must be readable too.
    let mut sorted_by_owner = by_conditions(json!([age_over_4]), json!(["name"]));
    sorted_by_owner["sort"] = json!({"attribute": "owner"});
    assert_denied(
        &clerk(sorted_by_owner).await,
        lacks_attributes(&[("owner", &["read"])]),
        json!([]),
    );
}

/// A structure user of `dev` creates and drops tables and attributes there and reads and
/// writes every table there, and nothing in `prod`; a role without grants does nothing.
#[tokio::test]
async fn structure_users_and_roles_without_grants() {
    let node = node().await.unwrap();
    let builder = |op| as_role(&node, "builder", op);
    for request in [
        json!({"operation": "create_table", "database": "dev", "table": "fish", "primary_key": "id"}),
        json!({"operation": "create_attribute", "database": "dev", "table": "fish", "attribute": "fin"}),
        json!({"operation": "insert", "database": "dev", "table": "fish", "records": [{"id": 1, "fin": 2}]}),
        json!({"operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "secret": "mine"}]}),
    ] {
        let (status, body) = builder(request.clone()).await;
        assert_eq!(status, 200, "{request}: {body}");
    }
    let (status, rows) = builder(
        json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": [1]}),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(sorted(&rows)[0]["secret"], "mine");
    for request in [
        json!({"operation": "drop_attribute", "database": "dev", "table": "fish", "attribute": "fin"}),
        json!({"operation": "drop_table", "database": "dev", "table": "fish"}),
    ] {
        let (status, body) = builder(request.clone()).await;
        assert_eq!(status, 200, "{request}: {body}");
    }
    for (op, extra) in [
        ("create_table", json!({"primary_key": "id"})),
        ("create_attribute", json!({"attribute": "x"})),
        ("drop_attribute", json!({"attribute": "name"})),
        ("drop_table", json!({})),
    ] {
        let mut request = json!({"operation": op, "database": "prod", "table": "vault"});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let message = format!("User does not have access to perform '{op}' against schema 'prod'");
        assert_denied(&builder(request).await, json!([message]), json!([]));
    }
    let read_vault =
        json!({"operation": "search_by_id", "database": "prod", "table": "vault", "ids": [1]});
    assert_denied(
        &builder(read_vault).await,
        json!([]),
        json!(["database 'prod' does not exist"]),
    );
    // Databases themselves are for `structure_user: true` roles: to this one, super-user
    // operations, as Harper answers.
    for (op, database) in [("create_database", "new"), ("drop_database", "prod")] {
        let message = format!("Operation '{op}' is restricted to 'super_user' roles");
        let request = json!({"operation": op, "database": database});
        assert_denied(&builder(request).await, json!([message]), json!([]));
    }
    assert_eq!(
        stored(&node, "prod", "vault", json!([1])).await,
        json!([{"id": 1, "name": "one"}])
    );
    let all = node
        .op_ok(json!({"operation": "describe_all"}))
        .await
        .unwrap();
    assert!(
        all.get("new").is_none() && all["prod"].get("vault").is_some(),
        "{all}"
    );
    assert!(all["dev"].get("fish").is_none(), "{all}");

    // Nothing granted: every data operation finds nothing, and writes nothing.
    let nobody = |op| as_role(&node, "nobody", op);
    for request in [
        json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": [1]}),
        json!({"operation": "search_by_value", "database": "dev", "table": "dog", "search_attribute": "id", "search_value": 1}),
        json!({"operation": "insert", "database": "dev", "table": "dog", "records": [{"id": 7}]}),
        json!({"operation": "delete", "database": "dev", "table": "dog", "ids": [1]}),
        json!({"operation": "describe_table", "database": "dev", "table": "dog"}),
        json!({"operation": "describe_database", "database": "dev"}),
    ] {
        assert_denied(
            &nobody(request).await,
            json!([]),
            json!(["database 'dev' does not exist"]),
        );
    }
    let (status, all) = nobody(json!({"operation": "describe_all"})).await;
    assert_eq!((status, all), (200, json!({})));
    assert_super_user_only(
        &nobody(json!({"operation": "create_table", "database": "dev", "table": "t", "primary_key": "id"})).await,
        "create_table",
    );
    assert_eq!(
        stored(&node, "dev", "dog", json!([1, 7]))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The attribute names of a table's description, sorted.
fn attributes(description: &Value) -> Vec<String> {
    let mut names: Vec<String> = description["attributes"]
        .as_array()
        .unwrap_or_else(|| panic!("no attributes in {description}"))
        .iter()
        .filter_map(|a| a["attribute"].as_str())
        .filter(|name| !name.starts_with("__"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The table names of a database's description, sorted.
fn tables(description: &Value) -> Vec<String> {
    let mut names: Vec<String> = description
        .as_object()
        .unwrap_or_else(|| panic!("not a database: {description}"))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

/// `describe_all`, `describe_database` and `describe_table` show a role only the databases
/// it grants something in, the tables it may do something with, and the attributes it has
/// a permission on; what it may not see is told as missing.
#[tokio::test]
async fn describe_shows_only_what_the_role_sees() {
    let node = node().await.unwrap();
    let admin = node
        .op_ok(json!({"operation": "describe_all"}))
        .await
        .unwrap();
    assert_eq!(tables(&admin["dev"]), ["bird", "cat", "dog"]);
    assert_eq!(
        attributes(&admin["dev"]["dog"]),
        ["age", "id", "name", "owner", "secret"]
    );

    let (status, all) = as_role(&node, "keeper", json!({"operation": "describe_all"})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(tables(&all), ["dev"]);
    assert_eq!(tables(&all["dev"]), ["cat", "dog"]);
    assert_eq!(
        attributes(&all["dev"]["dog"]),
        ["age", "id", "name", "owner", "secret"]
    );

    let (status, all) = as_role(&node, "clerk", json!({"operation": "describe_all"})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(tables(&all), ["dev"]);
    assert_eq!(tables(&all["dev"]), ["dog"]);
    // `secret` has no permission: hidden; `owner` may be inserted: shown.
    assert_eq!(
        attributes(&all["dev"]["dog"]),
        ["age", "id", "name", "owner"]
    );
    let (status, database) = as_role(
        &node,
        "clerk",
        json!({"operation": "describe_database", "database": "dev"}),
    )
    .await;
    assert_eq!(status, 200, "{database}");
    assert_eq!(tables(&database), ["dog"]);
    assert_eq!(database["dog"], all["dev"]["dog"]);
    let (status, table) = as_role(
        &node,
        "clerk",
        json!({"operation": "describe_table", "database": "dev", "table": "dog"}),
    )
    .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(attributes(&table), ["age", "id", "name", "owner"]);
    assert_denied(
        &as_role(
            &node,
            "clerk",
            json!({"operation": "describe_table", "database": "dev", "table": "bird"}),
        )
        .await,
        json!([]),
        json!(["Table 'dev.bird' does not exist"]),
    );
    assert_denied(
        &as_role(
            &node,
            "clerk",
            json!({"operation": "describe_database", "database": "prod"}),
        )
        .await,
        json!([]),
        json!(["database 'prod' does not exist"]),
    );

    // A structure user sees all of its databases, whatever their tables.
    let (status, all) = as_role(&node, "builder", json!({"operation": "describe_all"})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(tables(&all), ["dev"]);
    assert_eq!(tables(&all["dev"]), ["bird", "cat", "dog"]);
    assert_eq!(
        attributes(&all["dev"]["dog"]),
        ["age", "id", "name", "owner", "secret"]
    );
}
