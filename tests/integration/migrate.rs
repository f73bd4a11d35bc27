//! `migrate`, `status` and `verify` through the built binary, on SQLite always
//! and on the real PostgreSQL when PATHFINDER_TEST_POSTGRES_URL is set.

use crate::common;
use crate::common::on_both_backends;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Backend, Env, pathfinder, pathfinder_std};
use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::{Renderer, Scope};
use serde_json::Value as Json;

/// The latest tenant version: where `migrate --all` takes every tenant.
fn latest() -> i64 {
    Renderer::new(Dialect::Sqlite, None)
        .expect("templates load")
        .latest_version(Scope::Tenant) as i64
}

/// The tests' database: common's `Env`, with the helpers these tests share.
type Fleet = Env;

fn postgres_fleet(hint: &str) -> Option<Fleet> {
    let server = common::postgres_url()?;
    Some(Env::postgres(&server, hint))
}

impl Env {
    fn catalog(&self, keys: &[String]) -> Vec<Vec<String>> {
        match &self.backend {
            Backend::Postgres(_) => self.system_rows(
                "SELECT c.relname::text, a.attname::text FROM pg_class c \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE c.relname LIKE 'pf\\_%' ORDER BY 1, 2",
            ),
            Backend::Sqlite => {
                let mut all = Vec::new();
                for key in keys {
                    all.extend(self.tenant_rows(
                        key,
                        "SELECT m.name, c.name FROM sqlite_master m JOIN pragma_table_info(m.name) c ORDER BY 1, 2",
                    ));
                    all.extend(self.tenant_rows(
                        key,
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY 1",
                    ));
                }
                all
            }
        }
    }

    /// Starts `migrate --all --jobs 2` in the background and returns once at
    /// least `done` tenants are at the latest version (or after 30 s). The caller reaps
    /// the returned child (clippy cannot see that it is always returned).
    #[allow(clippy::zombie_processes)]
    fn migrate_in_background_until(&self, done: i64) -> std::process::Child {
        let child = pathfinder_std(self.path())
            .args([
                "--database-url",
                &self.url,
                "migrate",
                "--all",
                "--jobs",
                "2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = self.system_rows(&format!(
                "SELECT COUNT(*) FROM pf_tenants WHERE schema_version = {}",
                latest()
            ));
            if rows[0][0].parse::<i64>().unwrap_or(0) >= done || Instant::now() > deadline {
                return child;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Provisions the users listed in `file` at version 1.
    fn provision_v1(&self, file: &str, jobs: &str) {
        self.ok(&[
            "provision",
            "--to",
            "1",
            "--from-file",
            file,
            "--jobs",
            jobs,
        ]);
    }

    fn names_file(&self, prefix: &str, n: usize) -> (String, Vec<String>) {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
        let path = self.path().join(format!("{prefix}.txt"));
        std::fs::write(&path, names.join("\n")).expect("write names");
        (path.display().to_string(), names)
    }
}

fn versions(status: &Json) -> Vec<(i64, String, i64)> {
    status["by_version"]
        .as_array()
        .expect("by_version")
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["status"].as_str().unwrap().to_string(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// 200 tenants from V1 to the latest version with 4 jobs; then a no-op; then
/// verify is clean.
fn migrate_fleet(fleet: &Fleet) {
    let (file, names) = fleet.names_file("t", 200);
    fleet.provision_v1(&file, "4");
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(1, "active".into(), 200)]
    );

    let report = fleet.json(&["migrate", "--all", "--jobs", "4"]);
    assert_eq!(
        report["migrated"].as_array().unwrap().len(),
        200,
        "{report}"
    );
    assert!(report["failed"].as_array().unwrap().is_empty());
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 200)]
    );
    // The V2 column and index are really there.
    let key = &names[17];
    let cols = fleet.tenant_rows(
        key,
        &format!("SELECT deleted_at FROM pf_user_{key}_chat_messages WHERE 1 = 0"),
    );
    assert!(cols.is_empty());

    // Nothing pending: one registry query, well under a second even in debug builds.
    let started = Instant::now();
    let out = fleet.ok(&["migrate", "--all"]);
    assert!(out.contains("nothing to migrate"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));

    assert_eq!(
        fleet.ok(&["verify", "--all"]).lines().last().unwrap(),
        "200 tenant(s) verified, 0 with drift"
    );
    let audit = fleet.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.migrate' AND response_status = 200");
    assert_eq!(audit[0][0], "200");
}

on_both_backends!(
    migrate_fleet,
    sqlite_migrates_a_fleet_and_noop_is_cheap,
    postgres_migrates_a_fleet_and_noop_is_cheap,
    "fleet"
);

/// A tenant broken by hand fails, the rest succeed, exit 3; once repaired, a
/// re-run migrates exactly that tenant.
fn broken_tenant_is_isolated(fleet: &Fleet) {
    fleet.ok(&["provision", "--to", "1", "ann", "bea", "cid", "dan"]);
    fleet.tenant_exec("bea", "DROP TABLE pf_user_bea_chat_messages");

    let out = fleet.run(&["migrate", "--all", "--jobs", "2"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("bea"), "{}", stderr(&out));
    let status = fleet.json(&["status"]);
    assert_eq!(status["failed"][0]["username"], "bea");
    assert!(
        status["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("chat_messages"),
        "{status}"
    );
    assert!(versions(&status).contains(&(latest(), "active".into(), 3)));

    // Repair: recreate the table as version 1 defines it.
    let ddl = fleet.ok(&[
        "render",
        "bea",
        "--to",
        "1",
        "--dialect",
        if !fleet.is_sqlite() {
            "postgres"
        } else {
            "sqlite"
        },
    ]);
    let create = ddl
        .split(";\n")
        .find(|s| s.contains("CREATE TABLE pf_user_bea_chat_messages"))
        .expect("CREATE TABLE in render")
        .trim()
        .to_string();
    let index = ddl
        .split(";\n")
        .find(|s| s.contains("CREATE INDEX pf_user_bea_msg_conv_ix"))
        .expect("CREATE INDEX in render")
        .trim()
        .to_string();
    fleet.tenant_exec("bea", &format!("{create};\n{index};"));

    let report = fleet.json(&["migrate", "--all"]);
    let migrated: Vec<&str> = report["migrated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(migrated, vec!["bea"]);
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 4)]
    );
}

on_both_backends!(
    broken_tenant_is_isolated,
    sqlite_broken_tenant_fails_alone_and_resumes,
    postgres_broken_tenant_fails_alone_and_resumes,
    "broken"
);

/// Four `migrate --all` at once: all succeed, each migration applied once.
fn concurrent_runs(fleet: &Fleet) {
    let (file, names) = fleet.names_file("c", 60);
    fleet.provision_v1(&file, "2");
    let children: Vec<_> = (0..4)
        .map(|_| {
            pathfinder_std(fleet.path())
                .args([
                    "--database-url",
                    &fleet.url,
                    "migrate",
                    "--all",
                    "--jobs",
                    "2",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "concurrent migrate failed: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 60)]
    );
    let audit =
        fleet.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.migrate'");
    assert_eq!(audit[0][0], "60", "each tenant migrated exactly once");
    for key in names.iter().step_by(7) {
        let rows = fleet.tenant_rows(
            key,
            &format!("SELECT version FROM pf_user_{key}_schema_history ORDER BY version"),
        );
        let every_version: Vec<Vec<String>> = (1..=latest()).map(|v| vec![v.to_string()]).collect();
        assert_eq!(rows, every_version, "history of {key}");
    }
}

on_both_backends!(
    concurrent_runs,
    sqlite_concurrent_migrate_runs_apply_each_migration_once,
    postgres_concurrent_migrate_runs_apply_each_migration_once,
    "concurrent"
);

/// SIGKILL in the middle of a run, then a re-run finishes every tenant.
fn killed_run_resumes(fleet: &Fleet) {
    let (file, _) = fleet.names_file("k", 150);
    fleet.provision_v1(&file, "2");
    let mut child = fleet.migrate_in_background_until(10);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let out = fleet.run(&["migrate", "--all", "--jobs", "2"]);
    assert!(
        out.status.success(),
        "re-run after SIGKILL: {}",
        stderr(&out)
    );
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 150)]
    );
    let out = fleet.ok(&["verify", "--all"]);
    assert!(
        out.ends_with("150 tenant(s) verified, 0 with drift\n"),
        "{out}"
    );
}

on_both_backends!(
    killed_run_resumes,
    sqlite_killed_migrate_resumes,
    postgres_killed_migrate_resumes,
    "killed"
);

/// --dry-run prints each tenant's SQL and changes nothing.
fn dry_run_changes_nothing(fleet: &Fleet) {
    fleet.ok(&["provision", "--to", "1", "eve", "fay"]);
    let keys = vec!["eve".to_string(), "fay".to_string()];
    let before = fleet.catalog(&keys);
    let registry_before = fleet.system_rows(
        "SELECT username, schema_version, status, updated_at FROM pf_tenants ORDER BY 1",
    );
    let out = fleet.ok(&["migrate", "--all", "--dry-run"]);
    assert!(
        out.contains(&format!(
            "-- tenant eve (key eve): version 1 -> {}",
            latest()
        )),
        "{out}"
    );
    assert!(
        out.contains("ALTER TABLE pf_user_fay_chat_messages ADD deleted_at"),
        "{out}"
    );
    assert_eq!(fleet.catalog(&keys), before);
    assert_eq!(
        fleet.system_rows(
            "SELECT username, schema_version, status, updated_at FROM pf_tenants ORDER BY 1"
        ),
        registry_before
    );
    let plan = fleet.json(&["migrate", "--all", "--dry-run"]);
    assert_eq!(plan["tenants"].as_array().unwrap().len(), 2);
}

on_both_backends!(
    dry_run_changes_nothing,
    sqlite_dry_run_changes_nothing,
    postgres_dry_run_changes_nothing,
    "dryrun"
);

/// A template changed after its version was applied is reported, and the
/// tenant is left alone.
fn divergence_is_refused(fleet: &Fleet) {
    fleet.ok(&["provision", "--to", "1", "gus"]);
    let templates = fleet.path().join("templates");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("table-templates"),
        &templates,
    );
    let table = templates.join("tenant/tables/quick_summary.sql.tera");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(
        &table,
        text.replace(
            "key_strengths {{ text() }},",
            "key_strengths {{ text() }},\n    motto {{ text() }},",
        ),
    )
    .unwrap();

    let out = pathfinder(fleet.path())
        .env("PATHFINDER_TEMPLATES_DIR", &templates)
        .args(["--database-url", &fleet.url, "migrate", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("gus")
            && err.contains("version 1")
            && err.contains("changed after it was applied"),
        "{err}"
    );
    let status = fleet.json(&["status"]);
    assert_eq!(versions(&status), vec![(1, "failed".into(), 1)]);
    // With the original templates the same tenant migrates.
    fleet.ok(&["migrate", "--all"]);
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 1)]
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

on_both_backends!(
    divergence_is_refused,
    sqlite_divergent_template_is_refused,
    postgres_divergent_template_is_refused,
    "diverge"
);

/// verify finds a dropped index and a dropped column.
fn verify_finds_drift(fleet: &Fleet) {
    fleet.ok(&["provision", "hal", "ida"]);
    fleet.ok(&["verify", "--all"]);
    fleet.tenant_exec("ida", "DROP INDEX pf_user_ida_skl_name_ix");
    let out = fleet.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "ida (version {}): missing index skl_name_ix on skills",
            latest()
        )),
        "{text}"
    );
    assert!(!text.contains("hal"), "{text}");
    let report = fleet.json_allow_failure(&["verify", "ida"]);
    assert_eq!(
        report["drifted"][0]["problems"][0],
        "missing index skl_name_ix on skills"
    );
}

impl Env {
    fn json_allow_failure(&self, args: &[&str]) -> Json {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }
}

on_both_backends!(
    verify_finds_drift,
    sqlite_verify_finds_a_dropped_index,
    postgres_verify_finds_a_dropped_index,
    "verify"
);

/// A canary slice: --limit with an order migrates exactly the oldest N.
#[test]
fn sqlite_limit_migrates_a_canary_slice_oldest_first() {
    let fleet = Fleet::sqlite();
    for name in ["old1", "old2", "new1", "new2"] {
        fleet.ok(&["provision", "--to", "1", name]);
    }
    let report = fleet.json(&["migrate", "--all", "--limit", "2", "--order", "oldest"]);
    let migrated: Vec<&str> = report["migrated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(migrated, vec!["old1", "old2"]);
    assert!(versions(&fleet.json(&["status"])).contains(&(1, "active".into(), 2)));
}

/// Connections killed by the server in the middle of a run: the tenants that
/// were in flight fail with a connection error, the workers reconnect for the
/// rest, and a re-run completes every tenant.
#[test]
fn postgres_lost_connections_fail_only_in_flight_tenants() {
    let Some(fleet) = postgres_fleet("lostconn") else {
        return;
    };
    let (file, _) = fleet.names_file("l", 200);
    fleet.provision_v1(&file, "2");
    let child = fleet.migrate_in_background_until(10);
    fleet.system_rows(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'pathfinder-db' AND datname = current_database()",
    );
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    match out.status.code() {
        Some(0) => {} // the run finished before the connections were killed
        Some(3) => assert!(err.contains("PostgreSQL"), "the cause is named: {err}"),
        other => panic!("unexpected exit {other:?}: {err}"),
    }
    fleet.ok(&["migrate", "--all"]);
    assert_eq!(
        versions(&fleet.json(&["status"])),
        vec![(latest(), "active".into(), 200)]
    );
    assert!(
        fleet
            .ok(&["verify", "--all"])
            .ends_with("200 tenant(s) verified, 0 with drift\n")
    );
}

/// Tenant version 4 reaches a tenant provisioned at version 3: `migrate` adds the
/// indexes on retention's age columns, and the sweep's query shape (a range on the age
/// column in (age, id) order) is then served by them.
fn retention_indexes_reach_existing_tenants(fleet: &Fleet) {
    fleet.ok(&["provision", "alice", "--to", "3"]);
    let index_names = |fleet: &Fleet| -> Vec<String> {
        let sql = match fleet.backend {
            Backend::Postgres(_) => {
                "SELECT indexname FROM pg_indexes WHERE indexname IN \
                 ('pf_user_alice_msg_created_ix', 'pf_user_alice_msg_deleted_ix', 'pf_user_alice_conv_deleted_ix') \
                 ORDER BY 1"
            }
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN \
                 ('pf_user_alice_msg_created_ix', 'pf_user_alice_msg_deleted_ix', 'pf_user_alice_conv_deleted_ix') \
                 ORDER BY 1"
            }
        };
        fleet
            .tenant_rows("alice", sql)
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert!(index_names(fleet).is_empty(), "no V4 index at version 3");
    fleet.ok(&["migrate", "--all"]);
    assert_eq!(
        index_names(fleet),
        [
            "pf_user_alice_conv_deleted_ix",
            "pf_user_alice_msg_created_ix",
            "pf_user_alice_msg_deleted_ix"
        ]
    );
    let query = "SELECT s.id FROM pf_user_alice_chat_messages s \
                 WHERE s.created_at < CURRENT_TIMESTAMP ORDER BY s.created_at, s.id LIMIT 100";
    let plan = match fleet.backend {
        // A new table has no statistics: forbid the scans that read the table or sort
        // to ask whether the index can serve the query, in order, at all.
        Backend::Postgres(_) => common::pg_rows(
            &mut fleet.pg(),
            &format!("SET enable_seqscan = off; SET enable_bitmapscan = off; EXPLAIN {query}"),
        ),
        Backend::Sqlite => fleet.tenant_rows("alice", &format!("EXPLAIN QUERY PLAN {query}")),
    };
    let plan = format!("{plan:?}");
    assert!(plan.contains("pf_user_alice_msg_created_ix"), "{plan}");
    assert!(
        !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
    fleet.ok(&["verify", "alice"]);
}

on_both_backends!(
    retention_indexes_reach_existing_tenants,
    sqlite_retention_indexes_reach_existing_tenants,
    postgres_retention_indexes_reach_existing_tenants,
    "v4_indexes"
);

/// A tenant restored from a backup taken before a migration: its tables
/// (and own history) are at an older version than the registry records.
/// `verify` names it, and `migrate USER` sets the registry back (audited)
/// and brings the tenant up.
fn restored_tenant_behind_the_registry(env: &Env) {
    let latest = latest();
    let older = (latest - 1).to_string();
    env.ok(&["provision", "--to", &older, "old"]);
    // What a restore of the tables alone leaves: the registry says latest.
    env.system_exec(&format!(
        "UPDATE pf_tenants SET schema_version = {latest} WHERE username = 'old'"
    ));
    let out = env.run(&["verify", "old"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "its own history is at version {older}, the registry says {latest}"
        )) && said.contains("migrate old"),
        "{said}"
    );
    let out = env.run(&["migrate", "old"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("recorded as"), "{}", stderr(&out));
    env.ok(&["verify", "old"]);
    let audited = env.system_rows(
        "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.resync' AND entity_id = 'old'",
    );
    assert_eq!(audited[0][0], "1");
    // Nothing more to do.
    let again = env.run(&["migrate", "old"]);
    assert!(
        !stderr(&again).contains("recorded as"),
        "{}",
        stderr(&again)
    );
}
on_both_backends!(
    restored_tenant_behind_the_registry,
    restored_tenant_behind_the_registry_sqlite,
    restored_tenant_behind_the_registry_postgres,
    "migrestored"
);
