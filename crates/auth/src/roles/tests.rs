use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use shoal_store::{Store, StoreOptions};

use super::*;

/// Databases `dev` (table `dog`: id, name, owner) and `ops` (no tables).
struct Fake(HashMap<&'static str, HashMap<&'static str, Vec<String>>>);

impl Fake {
    fn new() -> Fake {
        let dog = ["id", "name", "owner"].map(String::from).to_vec();
        Fake(HashMap::from([
            ("dev", HashMap::from([("dog", dog)])),
            ("ops", HashMap::new()),
        ]))
    }
}

impl Schema for Fake {
    fn has_database(&self, database: &str) -> bool {
        self.0.contains_key(database)
    }

    fn attributes(&self, database: &str, table: &str) -> Option<Vec<String>> {
        self.0.get(database)?.get(table).cloned()
    }
}

fn check(request: Value, op: RoleOp) -> Result<(), RoleReport> {
    check_role(request.as_object().unwrap(), op, &Fake::new())
}

fn add(permission: Value) -> Result<(), RoleReport> {
    check(
        json!({"operation": "add_role", "role": "developer", "permission": permission}),
        RoleOp::Add,
    )
}

fn main_errors(errors: &[&str]) -> Result<(), RoleReport> {
    Err(RoleReport {
        main_permissions: errors.iter().map(|e| e.to_string()).collect(),
        schema_permissions: Vec::new(),
    })
}

fn dog_errors(errors: &[&str]) -> Result<(), RoleReport> {
    Err(RoleReport {
        main_permissions: Vec::new(),
        schema_permissions: vec![(
            "dev_dog".into(),
            errors.iter().map(|e| e.to_string()).collect(),
        )],
    })
}

fn dog(grant: Value) -> Value {
    json!({"super_user": false, "dev": {"tables": {"dog": grant}}})
}

/// Harper's documented `add_role` example is accepted, and so are the simple role kinds.
#[test]
fn harpers_examples_pass() {
    let developer = dog(json!({
        "read": true, "insert": true, "update": true, "delete": false,
        "attribute_permissions": [
            {"attribute_name": "name", "read": true, "insert": true, "update": true}
        ]
    }));
    assert_eq!(add(developer.clone()), Ok(()));
    for permission in [
        json!({"super_user": true}),
        json!({"cluster_user": true}),
        json!({"structure_user": true}),
        json!({"structure_user": ["dev", "ops"]}),
        json!({}),
        // `null` attribute permissions restrict nothing; `delete` on an attribute is tolerated.
        dog(
            json!({"read": true, "insert": false, "update": false, "delete": false, "attribute_permissions": null}),
        ),
        dog(
            json!({"read": true, "insert": false, "update": false, "delete": false,
            "attribute_permissions": [{"attribute_name": "id", "read": true, "insert": false, "update": false, "delete": true}]}),
        ),
    ] {
        assert_eq!(add(permission.clone()), Ok(()), "{permission}");
    }
    let alter = json!({"operation": "alter_role", "id": "developer-1", "permission": developer});
    assert_eq!(check(alter, RoleOp::Alter), Ok(()));
}

/// Each field of the request, with Harper's validate.js wording.
#[test]
fn request_fields() {
    assert_eq!(
        check(json!({"operation": "add_role"}), RoleOp::Add),
        main_errors(&["Role can't be blank", "Permission can't be blank"])
    );
    assert_eq!(
        check(
            json!({"operation": "alter_role", "permission": {}}),
            RoleOp::Alter
        ),
        main_errors(&["Id can't be blank"])
    );
    for bad in [
        json!("has space"),
        json!(""),
        json!(7),
        json!("dots.are.out"),
    ] {
        assert_eq!(
            check(
                json!({"role": bad, "id": bad, "permission": {}}),
                RoleOp::Add
            ),
            main_errors(&["Role is invalid", "Id is invalid"]),
            "{bad}"
        );
    }
    assert_eq!(
        check(
            json!({"role": "r", "permission": {}, "color": 1, "size": 2}),
            RoleOp::Add
        ),
        main_errors(&["Invalid keys in JSON body - 'color', 'size'"])
    );
    assert_eq!(
        check(
            json!({"role": "r", "permission": {}, "color": 1}),
            RoleOp::Add
        ),
        main_errors(&["Invalid key in JSON body - 'color'"])
    );
    assert_eq!(
        check(json!({"role": "r", "permission": "all"}), RoleOp::Add),
        main_errors(&["Value for 'permission' must be an object of role and database permissions"])
    );
}

/// The role-wide flags and the databases the permission names.
#[test]
fn role_flags_and_databases() {
    assert_eq!(
        add(json!({"super_user": true, "structure_user": true})),
        main_errors(&["Roles with 'super_user' set to true cannot have other permissions set."])
    );
    assert_eq!(
        add(json!({"super_user": "yes", "cluster_user": 1})),
        main_errors(&[
            "Value for 'super_user' permission must be a boolean",
            "Value for 'cluster_user' permission must be a boolean",
        ])
    );
    assert_eq!(
        add(json!({"structure_user": "dev"})),
        main_errors(&["Value for 'structure_user' permission must be a boolean or Array"])
    );
    assert_eq!(
        add(json!({"structure_user": ["dev", "prod"]})),
        main_errors(&["database 'prod' does not exist"])
    );
    assert_eq!(
        add(json!({"prod": {"tables": {}}})),
        main_errors(&["database 'prod' does not exist"])
    );
    assert_eq!(
        add(json!({"dev": {"tables": {"cat": {}}}})),
        main_errors(&["Table 'dev.cat' does not exist"])
    );
    assert_eq!(
        add(json!({"operations": ["read_only"]})),
        main_errors(&["Permission 'operations' is not supported by Shoal"])
    );
}

/// A table's grants: its keys, its four actions and its attribute list.
#[test]
fn table_grants() {
    assert_eq!(
        add(dog(
            json!({"read": true, "attribute_permissions": [], "drop": true})
        )),
        dog_errors(&[
            "Invalid table permission key value 'drop'",
            "Missing table INSERT permission",
            "Missing table UPDATE permission",
            "Missing table DELETE permission",
        ])
    );
    assert_eq!(
        add(dog(
            json!({"read": "yes", "insert": 1, "update": false, "delete": false})
        )),
        dog_errors(&[
            "Table READ permission must be a boolean",
            "Table INSERT permission must be a boolean",
            "Missing 'attribute_permissions' array",
        ])
    );
    assert_eq!(
        add(dog(
            json!({"read": true, "insert": true, "update": true, "delete": true, "attribute_permissions": {}})
        )),
        dog_errors(&["Value for 'attribute_permissions' must be an array"])
    );
}

/// Each attribute's grant, and a table that denies what an attribute grants.
#[test]
fn attribute_grants() {
    let table = |list: Value| {
        dog(
            json!({"read": false, "insert": true, "update": true, "delete": false, "attribute_permissions": list}),
        )
    };
    assert_eq!(
        add(table(json!([
            {"read": false, "insert": true, "update": true},
            {"attribute_name": "ghost", "read": true, "insert": true, "update": true},
            {"attribute_name": "name", "read": "no", "insert": true, "colour": 1},
            {"attribute_name": "owner", "read": true, "insert": false, "update": false},
        ]))),
        dog_errors(&[
            "Permission object in 'attribute_permission' missing an 'attribute_name'",
            "Invalid attribute 'ghost' in 'attribute_permissions'",
            "Invalid attribute permission key value 'colour'",
            "READ attribute permission for 'name' must be a boolean",
            "UPDATE attribute permission missing for 'name'",
            "You have a conflict with TABLE permissions for 'dev.dog' being false and ATTRIBUTE permissions being true",
        ])
    );
    // Reading an attribute of a table the role may not read is the only conflict here.
    assert_eq!(
        add(table(
            json!([{"attribute_name": "name", "read": false, "insert": true, "update": true}])
        )),
        Ok(())
    );
}

/// The body Harper answers with: `error` and both groups, tables keyed `db_table`.
#[test]
fn report_body() {
    let report = add(json!({"prod": {}, "dev": {"tables": {"dog": {"read": true}}}})).unwrap_err();
    assert_eq!(
        report.body(),
        json!({
            "error": "Errors in the role permissions JSON provided",
            "main_permissions": ["database 'prod' does not exist"],
            "schema_permissions": {"dev_dog": [
                "Missing table INSERT permission",
                "Missing table UPDATE permission",
                "Missing table DELETE permission",
                "Missing 'attribute_permissions' array",
            ]},
        })
    );
}

/// Harper's `add_user` checks, all problems in one message.
#[test]
fn new_user_checks() {
    let check = |request: Value| match check_new_user(request.as_object().unwrap()) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        check(json!({"operation": "add_user"})),
        "Username can't be blank,Password can't be blank,Role can't be blank,Active can't be blank"
    );
    assert_eq!(
        check(json!({"username": "system", "password": "", "role": "a b", "active": "yes"})),
        "Username You cannot create tables within the system schema,Password can't be blank,Role is invalid,Active must be a boolean"
    );
    assert_eq!(
        check(json!({"username": "bob", "password": "pw", "role": "dev-1", "active": false})),
        ""
    );
}

async fn auth() -> (tempfile::TempDir, Auth) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
    let auth = Auth::new(store);
    auth.bootstrap("admin", Some("pw")).await.unwrap();
    (dir, auth)
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn strip(mut record: Map<String, Value>) -> Value {
    record.remove("__createdtime__");
    record.remove("__updatedtime__");
    Value::Object(record)
}

/// The built-in roles are made once, ids equal to names; a second start adds nothing.
#[tokio::test]
async fn bootstrap_makes_the_built_in_roles() {
    let (_dir, auth) = auth().await;
    auth.bootstrap("admin", Some("pw")).await.unwrap();
    let roles: Vec<Value> = auth.list_roles().unwrap().into_iter().map(strip).collect();
    assert_eq!(
        roles,
        vec![
            json!({"id": "cluster_user", "role": "cluster_user", "permission": {"cluster_user": true}}),
            json!({"id": "super_user", "role": "super_user", "permission": {"super_user": true}}),
        ]
    );
}

/// A role's life: added (id from its name), named by users, altered, kept while in use,
/// dropped once not.
#[tokio::test]
async fn role_lifecycle() {
    let (_dir, auth) = auth().await;
    let added = auth
        .add_role(&object(
            json!({"operation": "add_role", "role": "reader", "permission": {}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        strip(added),
        json!({"id": "reader", "role": "reader", "permission": {}})
    );
    assert!(matches!(
        auth.add_role(&object(json!({"role": "reader", "id": "other", "permission": {}}))).await,
        Err(AuthError::Exists(m)) if m == "A role with name 'reader' already exists"
    ));
    assert!(matches!(
        auth.add_role(&object(json!({"role": "other", "id": "reader", "permission": {}}))).await,
        Err(AuthError::Exists(m)) if m == "A role with id 'reader' already exists"
    ));
    assert!(matches!(
        auth.add_role(&object(json!({"role": "x", "permission": {"nope": {}}}))).await,
        Err(AuthError::RolePermissions(r)) if r.main_permissions == ["database 'nope' does not exist"]
    ));

    let user = |role: &str| {
        object(json!({"username": "bob", "password": "pw", "role": role, "active": true}))
    };
    assert!(matches!(
        auth.add_user_request(&user("ghost")).await,
        Err(AuthError::NotFound(m)) if m == "ghost role not found"
    ));
    assert_eq!(auth.add_user_request(&user("reader")).await.unwrap(), "bob");

    let altered = auth
        .alter_role(&object(
            json!({"id": "reader", "role": "viewer", "permission": {"structure_user": true}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        strip(altered),
        json!({"id": "reader", "role": "viewer", "permission": {"structure_user": true}})
    );
    assert!(matches!(
        auth.alter_role(&object(json!({"id": "nobody", "permission": {}}))).await,
        Err(AuthError::Invalid(m)) if m == "Invalid role id"
    ));
    assert!(matches!(
        auth.alter_role(&object(json!({"id": "reader", "role": "super_user", "permission": {}}))).await,
        Err(AuthError::Exists(m)) if m == "A role with name 'super_user' already exists"
    ));

    let drop = |id: &str| object(json!({"id": id}));
    assert!(matches!(
        auth.drop_role(&drop("reader")).await,
        Err(AuthError::Exists(m)) if m == "Cannot drop role viewer as it has active user(s) tied to this role"
    ));
    assert!(matches!(
        auth.drop_role(&drop("nobody")).await,
        Err(AuthError::NotFound(m)) if m == "Role not found"
    ));
    assert!(matches!(
        auth.drop_role(&Map::new()).await,
        Err(AuthError::Invalid(m)) if m == "Id can't be blank"
    ));
    // An inactive user does not hold its role.
    auth.alter_user("bob", None, None, Some(false))
        .await
        .unwrap();
    assert_eq!(
        auth.drop_role(&drop("reader")).await.unwrap(),
        "viewer successfully deleted"
    );
    assert_eq!(auth.list_roles().unwrap().len(), 2);
}

/// Users are listed without password hashes, their roles expanded; a user sees itself.
#[tokio::test]
async fn users_are_shown_without_secrets() {
    let (_dir, auth) = auth().await;
    let users = auth.list_users().unwrap();
    assert_eq!(users.len(), 1);
    let admin = &users[0];
    assert_eq!(admin["username"], "admin");
    assert_eq!(admin["active"], true);
    assert!(admin.get("password").is_none(), "{admin:?}");
    assert_eq!(admin["role"]["id"], "super_user");
    assert_eq!(admin["role"]["permission"]["super_user"], true);
    assert_eq!(
        admin["role"]["permission"]["system"]["tables"]["hdb_user"],
        json!({"read": true, "insert": false, "update": false, "delete": false, "attribute_permissions": []})
    );
    let me = auth.user_info("admin").unwrap();
    assert!(me.get("password").is_none());
    assert_eq!(
        strip(me["role"].as_object().unwrap().clone()),
        json!({"id": "super_user", "role": "super_user", "permission": {"super_user": true}})
    );
}

/// Nothing leaves the node without an active super user: not dropping, disabling or
/// demoting the last one, nor taking super_user from its role.
#[tokio::test]
async fn the_last_super_user_stays() {
    let (_dir, auth) = auth().await;
    auth.add_role(&object(json!({"role": "reader", "permission": {}})))
        .await
        .unwrap();
    let last =
        |r: Result<_, AuthError>| matches!(r, Err(AuthError::Exists(m)) if m == LAST_SUPER_USER);
    assert!(last(auth.drop_user("admin").await.map(|_| ())));
    assert!(last(
        auth.alter_user("admin", None, None, Some(false))
            .await
            .map(|_| ())
    ));
    assert!(last(
        auth.alter_user("admin", None, Some("reader"), None)
            .await
            .map(|_| ())
    ));
    assert!(last(
        auth.alter_role(&object(json!({"id": "super_user", "permission": {}})))
            .await
            .map(|_| ())
    ));
    assert!(matches!(
        auth.alter_user("admin", None, Some("ghost"), None).await,
        Err(AuthError::NotFound(m)) if m == "Update failed.  Requested 'ghost' role not found."
    ));
    // With a second super user, the first may go.
    let second =
        object(json!({"username": "root", "password": "pw", "role": "super_user", "active": true}));
    auth.add_user_request(&second).await.unwrap();
    auth.drop_user("admin").await.unwrap();
    assert!(last(auth.drop_user("root").await));
}
