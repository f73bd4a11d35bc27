//! The provisioning and migration cycle on a real Oracle database. Runs only
//! when PATHFINDER_TEST_ORACLE_URL is set (oracle://USER:PASSWORD@HOST:PORT/SERVICE
//! or a TNS alias, with Oracle Instant Client installed); says it was skipped
//! otherwise. The Oracle DDL is still checked statically in every run
//! (tests/oracle_static.rs).

use crate::common;

use common::pathfinder;

fn run(dir: &std::path::Path, url: &str, args: &[&str]) -> std::process::Output {
    pathfinder(dir)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("run pathfinder-db")
}

fn ok(dir: &std::path::Path, url: &str, args: &[&str]) -> String {
    let out = run(dir, url, args);
    assert!(
        out.status.success(),
        "pathfinder-db {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn oracle_full_cycle() {
    let Some(url) = common::oracle_url() else {
        return;
    };
    let dir = common::tempdir();
    let dir = dir.path();
    let users = ["pfora_a", "pfora_b"];
    // Leftovers of an earlier, interrupted run are removed first.
    let _ = run(dir, &url, &["deprovision", users[0], users[1], "--yes"]);

    ok(dir, &url, &["init", "--with-reference-data"]);
    let out = ok(dir, &url, &["provision", "--to", "1", users[0], users[1]]);
    assert!(out.contains("2 provisioned"), "{out}");
    assert!(ok(dir, &url, &["provision", users[0]]).contains("already exists"));

    let report: serde_json::Value =
        serde_json::from_str(&ok(dir, &url, &["--json", "migrate", users[0], users[1]])).unwrap();
    assert_eq!(report["migrated"].as_array().unwrap().len(), 2, "{report}");
    assert!(ok(dir, &url, &["migrate", users[0], users[1]]).contains("nothing to migrate"));
    ok(dir, &url, &["verify", users[0], users[1]]);
    ok(dir, &url, &["refresh", users[0]]);

    let tenants: serde_json::Value =
        serde_json::from_str(&ok(dir, &url, &["--json", "tenants"])).unwrap();
    let a = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["username"] == users[0])
        .expect("tenant listed");
    assert_eq!(a["status"], "active");
    let latest = pathfinder_db::schema::render::Renderer::new(
        pathfinder_db::db::dialect::Dialect::Oracle,
        None,
    )
    .unwrap()
    .latest_version(pathfinder_db::schema::render::Scope::Tenant);
    assert_eq!(a["schema_version"], latest);

    let out = ok(dir, &url, &["deprovision", users[0], "--archive", "--yes"]);
    assert!(out.contains("deprovisioned"), "{out}");
    ok(dir, &url, &["deprovision", users[1], "--yes"]);
    assert!(ok(dir, &url, &["deprovision", users[1], "--yes"]).contains("already deprovisioned"));
}
