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

/// A member's URL as stored (without its password) and the password, from
/// `oracle://USER:PASSWORD@CONNECT`.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(rest) = url.strip_prefix("oracle://") else {
        return (url.to_string(), None);
    };
    match rest.rsplit_once('@') {
        Some((userinfo, connect)) => match userinfo.split_once(':') {
            Some((user, password)) => (
                format!("oracle://{user}@{connect}"),
                Some(password.to_string()),
            ),
            None => (url.to_string(), None),
        },
        None => (url.to_string(), None),
    }
}

/// A fleet on Oracle: the catalog (`PATHFINDER_TEST_ORACLE_URL`) and a member
/// (`PATHFINDER_TEST_ORACLE_MEMBER_URL`: another schema, PDB or Autonomous
/// Database; its password travels in `PATHFINDER_DATABASE_ORAM_PASSWORD`,
/// never in the stored URL). Tenants placed on the member are migrated,
/// verified, counted, fingerprinted, moved to the catalog and back, and
/// deprovisioned; the member is then removed. Runs only when both are set.
#[test]
fn oracle_fleet_cycle() {
    let Some(catalog) = common::oracle_url() else {
        return;
    };
    let member = match std::env::var("PATHFINDER_TEST_ORACLE_MEMBER_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: Oracle test oracle_fleet_cycle (set PATHFINDER_TEST_ORACLE_MEMBER_URL to run it)"
            );
            return;
        }
    };
    let (stored, password) = split_password(&member);
    let dir = common::tempdir();
    let dir = dir.path();
    let cmd = |args: &[&str]| {
        let mut c = pathfinder(dir);
        c.arg("--database-url").arg(&catalog).args(args);
        if let Some(p) = &password {
            c.env("PATHFINDER_DATABASE_ORAM_PASSWORD", p);
        }
        c.output().expect("run pathfinder-db")
    };
    let ok = |args: &[&str]| {
        let out = cmd(args);
        assert!(
            out.status.success(),
            "pathfinder-db {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).expect("JSON on stdout")
    };
    let users = ["pfora_fa", "pfora_fb"];
    // Leftovers of an interrupted run go first.
    let _ = cmd(&["deprovision", users[0], users[1], "--yes"]);
    let _ = cmd(&["databases", "remove", "oram"]);

    ok(&["init"]);
    ok(&["databases", "add", "oram", &stored]);
    let listed = json(&["databases", "list"]);
    let oram = listed["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "oram")
        .expect("the member is listed");
    assert_eq!(oram["reachable"], true, "{oram}");
    if let Some(p) = &password {
        assert!(!listed.to_string().contains(p.as_str()), "{listed}");
    }
    ok(&[
        "provision",
        "--to",
        "1",
        "--database",
        "oram",
        users[0],
        users[1],
    ]);
    for u in users {
        assert_eq!(json(&["where", u])["database"], "oram");
    }
    let report = json(&["migrate", "--all", "--database", "oram"]);
    assert_eq!(report["migrated"].as_array().unwrap().len(), 2, "{report}");
    ok(&["verify", "--all"]);
    let doctor = json(&["doctor"]);
    let counts = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "member counts")
        .cloned()
        .expect("a member counts check");
    assert_eq!(counts["ok"], true, "{counts}");

    let before = dir.join("before.json");
    let before = before.to_str().unwrap();
    ok(&["fingerprint", users[0], "--out", before]);
    ok(&["move", users[0], "--to", "catalog"]);
    assert_eq!(json(&["where", users[0]])["database"], "catalog");
    ok(&["fingerprint", "--compare", before, users[0]]);
    ok(&["move", users[0], "--to", "oram"]);
    ok(&["fingerprint", "--compare", before, users[0]]);

    ok(&["deprovision", users[0], users[1], "--yes"]);
    ok(&["databases", "remove", "oram"]);
}
