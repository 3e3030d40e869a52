//! The command line against a running node: `status`, `op`, `stop`, `version`, the way
//! operators and scripts use them.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, shoal_bin, start};

fn shoal(args: &[&str], root: &Path) -> Output {
    std::process::Command::new(shoal_bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .env("SHOAL_ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD)
        .output()
        .expect("the shoal binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn status_op_and_stop_drive_a_running_node() {
    let mut node = start("cli").await.unwrap();
    let root = node.root().to_owned();

    let status = shoal(&["status"], &root);
    assert!(status.status.success(), "status: {}", text(&status.stderr));
    let line = text(&status.stdout);
    assert!(line.starts_with("running name=cli"), "{line}");
    assert!(line.contains(&format!("ops={}", node.ops_addr())), "{line}");

    let created = shoal(
        &[
            "op",
            "create_table",
            "database=dev",
            "table=dog",
            "primary_key=id",
        ],
        &root,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let inserted = shoal(
        &[
            "op",
            "insert",
            "database=dev",
            "table=dog",
            r#"records=[{"id":7,"name":"Penny"}]"#,
        ],
        &root,
    );
    assert!(inserted.status.success(), "{}", text(&inserted.stderr));
    let found = shoal(
        &["op", "search_by_id", "database=dev", "table=dog", "ids=[7]"],
        &root,
    );
    let body: Value = serde_json::from_slice(&found.stdout).expect("op prints JSON");
    assert_eq!(body[0]["name"], "Penny");

    // An error answer is printed and makes the command fail.
    let missing = shoal(
        &["op", "describe_table", "database=dev", "table=nope"],
        &root,
    );
    assert!(!missing.status.success());
    let body: Value = serde_json::from_slice(&missing.stdout).expect("op prints JSON");
    assert_eq!(body["error"], "Table 'dev.nope' does not exist");

    let stopped = shoal(&["stop"], &root);
    assert!(stopped.status.success(), "stop: {}", text(&stopped.stderr));
    let exit = node.wait_for_exit(Duration::from_secs(30)).await.unwrap();
    assert!(exit.success(), "clean shutdown exits 0: {exit:?}");
    assert!(
        !root.join("shoal.pid").exists(),
        "the run file is removed on clean shutdown"
    );
    let after = shoal(&["status"], &root);
    assert!(!after.status.success(), "status of a stopped node fails");
}

#[test]
fn version_prints_the_version() {
    let out = std::process::Command::new(shoal_bin())
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        format!("shoal {}", env!("CARGO_PKG_VERSION"))
    );
}
