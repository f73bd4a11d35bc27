//! The failure paths found by attacking the first release, each as it was
//! reported: an export overwritten on a re-run, rows written during an
//! archive, a second archive generation, bytes that are not text, two main
//! files sharing a tenant folder, tenants stuck half-way, typos that dropped
//! a tenant, races with migrate, missing audit rows, read-only commands that
//! created databases, lost connections, too many jobs, read-only files, and
//! passwords in output. Through the built binary, on SQLite and on the real
//! PostgreSQL.

use crate::common;
use crate::common::on_both_backends;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env};
use pathfinder_db::schema::tenant::TENANT_TABLES;
use serde_json::Value as Json;

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn count(env: &Env, key: &str, sql: &str) -> i64 {
    env.tenant_rows(key, sql)[0][0].parse().expect("a count")
}

pub(crate) fn status_of(env: &Env, user: &str) -> String {
    env.system_rows(&format!(
        "SELECT status FROM pf_tenants WHERE username = '{user}'"
    ))
    .first()
    .map(|r| r[0].clone())
    .unwrap_or_default()
}

pub(crate) fn audit_count(env: &Env, action: &str, user: &str, status: &str) -> usize {
    env.system_rows(&format!(
        "SELECT COUNT(*) FROM pf_audit_log WHERE action = '{action}' AND entity_id = '{user}' \
         AND response_status = {status}"
    ))[0][0]
        .parse()
        .unwrap()
}

/// Experiences, skills and chat rows for `key`: `n` of each, ids `<tag>-<i>`.
fn seed(env: &Env, key: &str, tag: &str, n: usize) {
    let mut sql = String::new();
    for i in 0..n {
        sql.push_str(&format!(
            "INSERT INTO pf_user_{key}_experiences (id, title, company, start_date) VALUES ('{tag}-e{i}', 'Engineer', 'Acme', '2020-01-01');\n\
             INSERT INTO pf_user_{key}_skills (id, experience_id, skill_name) VALUES ('{tag}-s{i}', '{tag}-e{i}', 'Rust');\n\
             INSERT INTO pf_user_{key}_chat_conversations (id, title) VALUES ('{tag}-c{i}', 'Hello');\n\
             INSERT INTO pf_user_{key}_chat_messages (id, conversation_id, role, content) VALUES ('{tag}-m{i}', '{tag}-c{i}', 'user', 'Hi {i}');\n"
        ));
    }
    env.tenant_exec(key, &sql);
}

fn sha256_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

// ---------------------------------------------------------------------------
// 1. An export is never overwritten; a re-run after the tables are gone
//    finishes without touching it.

fn export_is_never_overwritten(env: &Env) {
    env.ok(&["provision", "carol", "dave"]);
    seed(env, "carol", "c", 3);
    let export = env.path().join("carol.jsonl");
    std::fs::write(&export, "precious\n").unwrap();

    // An existing file is refused before anything changes (exit 2).
    let out = env.run(&[
        "deprovision",
        "carol",
        "--yes",
        "--export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&export).unwrap(), "precious\n");
    assert_eq!(status_of(env, "carol"), "active");
    assert_eq!(
        count(
            env,
            "carol",
            "SELECT COUNT(*) FROM pf_user_carol_experiences"
        ),
        3
    );

    // --force replaces it with a complete, verified export.
    env.ok(&[
        "deprovision",
        "carol",
        "--yes",
        "--force",
        "--export",
        export.to_str().unwrap(),
    ]);
    let (_, manifest) = pathfinder_db::tenants::export::verify(&export).expect("a complete export");
    assert_eq!(manifest.rows, 12);
    let good = sha256_of(&export);

    // Running the same command again changes nothing, the file least of all.
    let out = env.run(&[
        "deprovision",
        "carol",
        "--yes",
        "--export",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    assert_eq!(sha256_of(&export), good, "the export is untouched");

    // A run interrupted after the tables were dropped (registry still
    // `deprovisioning`): the re-run finishes, leaves the file as it is, says so.
    let export_d = env.path().join("dave.jsonl");
    env.ok(&[
        "deprovision",
        "dave",
        "--yes",
        "--export",
        export_d.to_str().unwrap(),
    ]);
    let good_d = sha256_of(&export_d);
    // Put dave back in the state a kill leaves: provisioned, tables dropped,
    // the registry saying deprovisioning.
    env.ok(&["provision", "dave"]);
    env.system_exec("UPDATE pf_tenants SET status = 'deprovisioning' WHERE username = 'dave'");
    match &env.backend {
        Backend::Sqlite => {
            std::fs::remove_file(common::sqlite_tenant_file(env.path(), "dave")).unwrap()
        }
        Backend::Postgres(_) => {
            let drop: Vec<String> = TENANT_TABLES
                .iter()
                .rev()
                .map(|t| format!("DROP TABLE pf_user_dave_{t} CASCADE;"))
                .collect();
            env.system_exec(&drop.join("\n"));
        }
    }
    let out = env.run(&[
        "deprovision",
        "dave",
        "--yes",
        "--export",
        export_d.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("left as it is"), "{}", stdout(&out));
    assert_eq!(
        sha256_of(&export_d),
        good_d,
        "the earlier export is untouched"
    );
    assert_eq!(status_of(env, "dave"), "deprovisioned");
}
on_both_backends!(
    export_is_never_overwritten,
    export_is_never_overwritten_sqlite,
    export_is_never_overwritten_postgres,
    "exportkeep"
);

// ---------------------------------------------------------------------------
// 2. Rows written while an archive or export runs are never lost.

/// Starts `deprovision` with `extra` arguments while the application inserts
/// chat messages as fast as it can; returns the ids whose insert committed.
fn deprovision_under_writes(env: &Env, user: &str, extra: &[&str]) -> BTreeSet<String> {
    env.ok(&["provision", user]);
    seed(env, user, "x", 50);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let committed = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut ids = BTreeSet::new();
            let mut insert: Box<dyn FnMut(&str) -> bool> = match &env.backend {
                Backend::Sqlite => {
                    let conn = rusqlite::Connection::open(common::sqlite_tenant_file(env.path(), user)).unwrap();
                    conn.busy_timeout(Duration::from_secs(30)).unwrap();
                    Box::new(move |id: &str| {
                        conn.execute(
                            &format!("INSERT INTO pf_user_{user}_chat_messages (id, conversation_id, role, content) VALUES (?1, 'x-c0', 'user', 'during')"),
                            [id],
                        )
                        .is_ok()
                    })
                }
                Backend::Postgres(_) => {
                    let mut client = env.pg();
                    Box::new(move |id: &str| {
                        client
                            .execute(
                                &format!("INSERT INTO pf_user_{user}_chat_messages (id, conversation_id, role, content) VALUES ($1, 'x-c0', 'user', 'during')"),
                                &[&id],
                            )
                            .is_ok()
                    })
                }
            };
            let mut i = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let id = format!("w-{i}");
                if insert(&id) {
                    ids.insert(id);
                } else if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                i += 1;
            }
            ids
        });
        std::thread::sleep(Duration::from_millis(200));
        let mut args = vec!["deprovision", user, "--yes"];
        args.extend_from_slice(extra);
        env.ok(&args);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().unwrap()
    });
    assert!(!committed.is_empty(), "the writer got some rows in before");
    committed
}

fn writes_during_archive_are_kept(env: &Env) {
    let committed = deprovision_under_writes(env, "wendy", &["--archive"]);
    let archived: BTreeSet<String> = env
        .tenant_rows(
            "wendy",
            "SELECT id FROM pf_user_wendy_chat_messages_archive WHERE id LIKE 'w-%'",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let lost: Vec<_> = committed.difference(&archived).collect();
    assert!(
        lost.is_empty(),
        "{} committed rows were lost: {lost:?}",
        lost.len()
    );

    let export = env.path().join("xavier.jsonl");
    let committed =
        deprovision_under_writes(env, "xavier", &["--export", export.to_str().unwrap()]);
    let text = std::fs::read_to_string(&export).unwrap();
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|d| d["table"] == "chat_messages")
        .filter_map(|d| d["row"]["id"].as_str().map(String::from))
        .filter(|id| id.starts_with("w-"))
        .collect();
    let lost: Vec<_> = committed.difference(&exported).collect();
    assert!(
        lost.is_empty(),
        "{} committed rows were not exported: {lost:?}",
        lost.len()
    );
}
on_both_backends!(
    writes_during_archive_are_kept,
    writes_during_archive_are_kept_sqlite,
    writes_during_archive_are_kept_postgres,
    "writes"
);

// ---------------------------------------------------------------------------
// 3. A second archive generation with the same ids is kept, not skipped.

fn second_generation_is_archived(env: &Env) {
    env.ok(&["provision", "gina"]);
    seed(env, "gina", "g", 4);
    env.ok(&["deprovision", "gina", "--archive", "--yes"]);
    // The same user back takes up the kept archives.
    env.ok(&["provision", "gina", "--take-archives"]);
    seed(env, "gina", "g", 4); // the same ids again
    let out = env.ok(&["deprovision", "gina", "--archive", "--yes"]);
    assert!(out.contains("16 rows archived"), "{out}");
    for (table, per_generation) in [("experiences", 4), ("chat_messages", 4), ("skills", 4)] {
        let rows = env.tenant_rows(
            "gina",
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT archived_at) FROM pf_user_gina_{table}_archive"
            ),
        );
        assert_eq!(
            rows[0],
            vec![
                (2 * per_generation).to_string(),
                per_generation.to_string(),
                "2".to_string()
            ],
            "{table}: both generations, told apart by archived_at"
        );
    }
}
on_both_backends!(
    second_generation_is_archived,
    second_generation_is_archived_sqlite,
    second_generation_is_archived_postgres,
    "generations"
);

// ---------------------------------------------------------------------------
// 4. SQLite export keeps bytes exactly.

#[test]
fn sqlite_export_keeps_blobs_and_invalid_text() {
    let env = Env::sqlite();
    env.ok(&["provision", "bytes"]);
    let file = common::sqlite_tenant_file(env.path(), "bytes");
    let conn = rusqlite::Connection::open(&file).unwrap();
    let blob: Vec<u8> = vec![0, 1, 2, 255, 254, 0x80];
    conn.execute(
        "INSERT INTO pf_user_bytes_chat_conversations (id, title, context) VALUES ('c1', ?1, CAST(X'61FF62' AS TEXT))",
        [&blob],
    )
    .unwrap();
    drop(conn);
    let export = env.path().join("bytes.jsonl");
    env.ok(&[
        "deprovision",
        "bytes",
        "--yes",
        "--export",
        export.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&export).unwrap();
    let row = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .find(|d| d["table"] == "chat_conversations")
        .expect("the conversation was exported");
    let title = pathfinder_db::tenants::export::decode(&row["row"]["title"]).unwrap();
    assert_eq!(title, pathfinder_db::db::Value::Blob(blob));
    let context = pathfinder_db::tenants::export::decode(&row["row"]["context"]).unwrap();
    assert_eq!(
        context,
        pathfinder_db::db::Value::TextBytes(vec![b'a', 0xff, b'b'])
    );
}

// ---------------------------------------------------------------------------
// 5. Two main files in one folder never share tenant files.

#[test]
fn two_main_files_never_share_tenants() {
    let dir = common::tempdir();
    let a = format!("sqlite://{}", dir.path().join("prod.db").display());
    let b = format!("sqlite://{}", dir.path().join("prod.sqlite").display());
    let run = |url: &str, args: &[&str]| {
        common::pathfinder(dir.path())
            .arg("--database-url")
            .arg(url)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&a, &["provision", "alice"]).status.success());
    assert!(run(&b, &["provision", "alice"]).status.success());
    let a_file = dir.path().join("prod.db.tenants/alice.db");
    let b_file = dir.path().join("prod.sqlite.tenants/alice.db");
    assert!(
        a_file.exists() && b_file.exists(),
        "one folder per main file"
    );
    assert!(run(&a, &["deprovision", "alice", "--yes"]).status.success());
    assert!(!a_file.exists());
    assert!(b_file.exists(), "the other database's tenant is untouched");

    // A tenant file copied from another database is refused, never adopted.
    std::fs::copy(&b_file, &a_file).unwrap();
    assert!(run(&a, &["provision", "alice"]).status.code() != Some(0));
    let out = run(&a, &["provision", "alice"]);
    assert!(
        stderr(&out).contains("belongs to another pathfinder-db database"),
        "{}",
        stderr(&out)
    );
    assert!(b_file.exists());

    // Another tenant's file of this same database put in a tenant's place
    // is refused too, and named as such.
    assert!(run(&a, &["provision", "carl", "dana"]).status.success());
    let tenants = dir.path().join("prod.db.tenants");
    std::fs::copy(tenants.join("carl.db"), tenants.join("dana.db")).unwrap();
    let out = run(&a, &["refresh", "dana"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("belongs to tenant carl of this database, not to tenant dana"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------
// 6. A failed deprovision leaves no stuck tenant; a stuck one can be finished
//    or cancelled.

fn failed_deprovision_is_not_stuck(env: &Env) {
    env.ok(&["provision", "fred"]);
    seed(env, "fred", "f", 2);
    // A folder that does not exist: refused before anything changes.
    let out = env.run(&[
        "deprovision",
        "fred",
        "--yes",
        "--export",
        "/nonexistent/dir/f.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(status_of(env, "fred"), "active");
    env.ok(&["refresh", "fred"]);
    env.ok(&["migrate", "fred"]);

    // A deprovisioning interrupted before it dropped anything: --cancel takes it back.
    env.system_exec("UPDATE pf_tenants SET status = 'deprovisioning' WHERE username = 'fred'");
    let out = env.run(&["provision", "fred"]);
    assert!(
        stderr(&out).contains("--cancel"),
        "the way forward is named: {}",
        stderr(&out)
    );
    env.ok(&["deprovision", "fred", "--cancel"]);
    assert_eq!(status_of(env, "fred"), "active");
    assert_eq!(
        count(env, "fred", "SELECT COUNT(*) FROM pf_user_fred_experiences"),
        2
    );
    assert_eq!(
        audit_count(env, "tenant.deprovision_cancel", "fred", "200"),
        1
    );
    let status = env.json(&["status"]);
    assert!(status["failed"].as_array().unwrap().is_empty(), "{status}");

    // One started with --archive and stopped half-way is finished only that
    // way: a plain run would drop the rows unarchived and shred the key.
    env.system_exec(
        "UPDATE pf_tenants SET status = 'deprovisioning', \
         claimed_by = 'deprovision-archive@2026-12-06 22:00:00.000000' WHERE username = 'fred'",
    );
    let out = env.run(&["deprovision", "fred", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deprovision fred --archive --yes"),
        "{}",
        stderr(&out)
    );
    let check = env.doctor_check("tenants");
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("deprovision fred --archive --yes"),
        "{check}"
    );
    assert_eq!(
        count(env, "fred", "SELECT COUNT(*) FROM pf_user_fred_experiences"),
        2
    );
    env.ok(&["deprovision", "fred", "--archive", "--yes"]);
    assert_eq!(status_of(env, "fred"), "deprovisioned");
    assert_eq!(
        count(
            env,
            "fred",
            "SELECT COUNT(*) FROM pf_user_fred_experiences_archive"
        ),
        2
    );
}
on_both_backends!(
    failed_deprovision_is_not_stuck,
    failed_deprovision_is_not_stuck_sqlite,
    failed_deprovision_is_not_stuck_postgres,
    "stuck"
);

#[test]
fn damaged_or_missing_tenant_file_is_named() {
    let env = Env::sqlite();
    env.ok(&["provision", "gary", "hank"]);
    let file = common::sqlite_tenant_file(env.path(), "gary");
    std::fs::write(&file, b"this is not a database, just garbage bytes......").unwrap();
    let out = env.run(&["deprovision", "gary", "--yes", "--export", "g.jsonl"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("damaged or not a SQLite database"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert_eq!(status_of(&env, "gary"), "active", "nothing changed");
    assert!(!env.path().join("g.jsonl").exists());

    let hank = common::sqlite_tenant_file(env.path(), "hank");
    std::fs::remove_file(&hank).unwrap();
    let out = env.run(&["refresh", "hank"]);
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(!hank.exists(), "a missing tenant file is never created");
    let out = env.run(&["migrate", "hank"]);
    assert!(!hank.exists(), "{}", stderr(&out));
    // The way forward: deprovision finishes without the file.
    env.ok(&["deprovision", "hank", "--yes"]);
    assert_eq!(status_of(&env, "hank"), "deprovisioned");
    // A damaged file fails its own tenant in `verify`; the others are verified.
    env.ok(&["provision", "ivan"]);
    let (code, doc) = env.json_run(&["verify", "--all"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(doc["failed"][0]["username"], "gary", "{doc}");
    assert_eq!(doc["verified"], 1, "{doc}");
}

// ---------------------------------------------------------------------------
// 7. Every name is checked before anything is dropped.

fn typo_drops_nothing(env: &Env) {
    env.ok(&["provision", "bob"]);
    let out = env.run(&["deprovision", "bob", "nosuchuser", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuchuser"), "{}", stderr(&out));
    assert_eq!(status_of(env, "bob"), "active", "bob was not dropped");
    let out = env.run(&["deprovision", "bob", "Not.A.Name", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(status_of(env, "bob"), "active");
    env.ok(&["deprovision", "bob", "--yes"]);
    let out = env.run(&["deprovision", "bob"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "already gone is nothing to do, even without --yes"
    );
    assert!(stdout(&out).contains("nothing to do"));
}
on_both_backends!(
    typo_drops_nothing,
    typo_drops_nothing_sqlite,
    typo_drops_nothing_postgres,
    "typo"
);

// ---------------------------------------------------------------------------
// 8. migrate racing deprovision never resurrects a tenant.

fn migrate_racing_deprovision(env: &Env) {
    let names: Vec<String> = (0..30).map(|i| format!("r{i:02}")).collect();
    let file = env.path().join("r.txt");
    std::fs::write(&file, names.join("\n")).unwrap();
    env.ok(&[
        "provision",
        "--to",
        "1",
        "--from-file",
        file.to_str().unwrap(),
    ]);
    let child = env
        .std_cmd()
        .args(["migrate", "--all", "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gone: Vec<&str> = names.iter().step_by(3).map(String::as_str).collect();
    for user in &gone {
        env.ok(&["deprovision", user, "--yes"]);
    }
    let _ = child.wait_with_output();
    env.ok(&["migrate", "--all"]);
    let registry = env.system_rows("SELECT username, status FROM pf_tenants ORDER BY username");
    for row in registry {
        let want = if gone.contains(&row[0].as_str()) {
            "deprovisioned"
        } else {
            "active"
        };
        assert_eq!(row[1], want, "{}", row[0]);
        if env.is_sqlite() {
            assert_eq!(
                common::sqlite_tenant_file(env.path(), &row[0]).exists(),
                want == "active",
                "{}'s file",
                row[0]
            );
        }
    }
}
on_both_backends!(
    migrate_racing_deprovision,
    migrate_racing_deprovision_sqlite,
    migrate_racing_deprovision_postgres,
    "race"
);

// ---------------------------------------------------------------------------
// 9. A change completed by a re-run after a crash is audited once.

fn completed_by_rerun_is_audited(env: &Env) {
    env.ok(&["provision", "ivy"]);
    // What a kill between the tenant's commit and the registry's leaves.
    env.system_exec(
        "UPDATE pf_tenants SET status = 'provisioning' WHERE username = 'ivy'; \
         DELETE FROM pf_audit_log WHERE entity_id = 'ivy'",
    );
    let out = env.ok(&["provision", "ivy"]);
    assert!(out.contains("provisioned ivy"), "{out}");
    assert_eq!(audit_count(env, "tenant.provision", "ivy", "200"), 1);
    env.ok(&["provision", "ivy"]);
    assert_eq!(
        audit_count(env, "tenant.provision", "ivy", "200"),
        1,
        "no change, no row"
    );

    env.system_exec(
        "UPDATE pf_tenants SET status = 'migrating', schema_version = 1 WHERE username = 'ivy'",
    );
    env.ok(&["migrate", "--all"]);
    assert_eq!(audit_count(env, "tenant.migrate", "ivy", "200"), 1);
    env.ok(&["migrate", "--all"]);
    assert_eq!(audit_count(env, "tenant.migrate", "ivy", "200"), 1);
}
on_both_backends!(
    completed_by_rerun_is_audited,
    completed_by_rerun_is_audited_sqlite,
    completed_by_rerun_is_audited_postgres,
    "rerunaudit"
);

// ---------------------------------------------------------------------------
// 10. Read-only commands never create a database; nor does `migrate` (a CI
// job with a mistyped URL fails instead of migrating an empty database).

#[test]
fn read_only_commands_create_nothing() {
    let dir = common::tempdir();
    let url = format!("sqlite://{}", dir.path().join("typo.db").display());
    for args in [
        vec!["tenants"],
        vec!["status"],
        vec!["verify", "--all"],
        vec!["refresh", "bob"],
        vec!["deprovision", "bob", "--yes"],
        vec!["migrate", "--all", "--dry-run"],
        vec!["migrate", "--all"],
        vec!["--json", "migrate", "--all"],
    ] {
        let out = common::pathfinder(dir.path())
            .arg("--database-url")
            .arg(&url)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("init"), "{args:?}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} created something"
        );
    }
}

// ---------------------------------------------------------------------------
// 11. Two users racing for one tenant key: the loser is told who has it.

#[test]
fn key_race_names_the_owner_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "keyrace");
    env.ok(&["init"]);
    for round in 0..5 {
        let key = format!("k{round}");
        let spawn = |user: String| {
            env.std_cmd()
                .args(["provision", &user, "--tenant-key", &key])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(format!("ua{round}")), spawn(format!("ub{round}")));
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let winners = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "one of them gets the key");
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = stderr(loser);
        assert_eq!(loser.status.code(), Some(2), "{err}");
        assert!(err.contains("already belongs to user u"), "{err}");
        assert!(!err.contains("aborted"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// 12. --jobs is capped to what the server accepts; 0 is refused everywhere.

#[test]
fn jobs_are_capped_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "jobscap");
    let names: Vec<String> = (0..12).map(|i| format!("j{i}")).collect();
    let mut args = vec!["provision", "--jobs", "5000"];
    args.extend(names.iter().map(String::as_str));
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = env.json(&["status"]);
    assert_eq!(status["tenants"], 12, "{status}");
    for cmd in ["provision", "refresh", "migrate", "deprovision"] {
        let out = env.run(&[cmd, "j1", "--jobs", "0"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{cmd} --jobs 0: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------
// 13. A read-only SQLite file leaves nothing behind; `dialect` is for render.

#[test]
fn read_only_file_leaves_no_debris() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = common::tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let url = common::sqlite_url(dir.path());
    let main = dir.path().join("pathfinder.db");
    assert!(
        common::pathfinder(dir.path())
            .args(["--database-url", &url, "provision", "alice"])
            .output()
            .unwrap()
            .status
            .success()
    );
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o444)).unwrap();
    let bypasses = std::fs::OpenOptions::new().write(true).open(&main).is_ok();
    let as_reader = |args: &[&str]| {
        let mut cmd = common::pathfinder_std(dir.path());
        cmd.args(["--database-url", &url]).args(args);
        if bypasses {
            cmd.uid(65534).gid(65534);
        }
        cmd.output()
    };
    let Ok(out) = as_reader(&["tenants"]) else {
        eprintln!("SKIPPED: read-only test: cannot run the binary as nobody");
        return;
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alice"));
    let out = as_reader(&["provision", "bob"]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    for debris in ["pathfinder.db-shm", "pathfinder.db-wal"] {
        let path = dir.path().join(debris);
        assert!(
            !path.exists() || std::fs::metadata(&path).unwrap().permissions().mode() & 0o200 != 0,
            "{debris} left read-only"
        );
    }
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o666)).unwrap();
    let tenants = dir.path().join("pathfinder.db.tenants");
    std::fs::set_permissions(&tenants, std::fs::Permissions::from_mode(0o777)).unwrap();
    if bypasses {
        // The tenant folder must be the running user's (its owner could
        // replace the files in it).
        std::os::unix::fs::chown(&tenants, Some(65534), Some(65534)).unwrap();
    }
    let mut cmd = common::pathfinder_std(dir.path());
    cmd.args(["--database-url", &url, "provision", "bob"]);
    if bypasses {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "writable again, it works: {}",
        stderr(&out)
    );
}

#[test]
fn dialect_setting_is_for_render_only() {
    let env = Env::sqlite();
    std::fs::write(
        env.path().join("pathfinder-db.toml"),
        "dialect = \"oracle\"\n",
    )
    .unwrap();
    env.ok(&["provision", "alice"]);
    env.ok(&["tenants"]);
    let sql = env.ok(&["render", "alice"]);
    assert!(
        sql.contains("VARCHAR2"),
        "render uses the configured dialect"
    );
    let sql = env.ok(&["render", "alice", "--dialect", "postgres"]);
    assert!(!sql.contains("VARCHAR2"));
}

// ---------------------------------------------------------------------------
// 14. Passwords never show, in any form the drivers accept.

#[test]
fn passwords_never_show_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "secrets");
    let secret = "Sup3rSecretPw";
    let sep = if env.url.contains('?') { '&' } else { '?' };
    let with_param = format!("{}{sep}password={secret}", env.url);
    for args in [
        vec!["init"],
        vec!["--json", "init"],
        vec!["deprovision", "nobody"],
        vec!["provision", "alice"],
    ] {
        let out = common::pathfinder(env.path())
            .arg("--database-url")
            .arg(&with_param)
            .args(&args)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains(secret),
            "{args:?} printed the password: {all}"
        );
    }
    for url in [
        format!("host=127.0.0.1 password={secret} dbname=x oops=("),
        format!("postgres://u:{secret}@127.0.0.1:1/x?bad=%"),
        format!("postgres://u:{secret}@127.0.0.1:1/nosuchdb"),
    ] {
        let out = common::pathfinder(env.path())
            .args(["--database-url", &url, "tenants"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains(secret), "{url}: {all}");
    }
    let audit = env.system_rows("SELECT COALESCE(error_message, '') FROM pf_audit_log");
    assert!(audit.iter().all(|r| !r[0].contains(secret)));
}

// ---------------------------------------------------------------------------
// The --json convention: username, tenant_key, `failed` always a list, UTC times.

#[test]
fn json_documents_follow_one_convention() {
    let env = Env::sqlite();
    let provision = env.json(&["provision", "alice", "bob"]);
    assert!(provision["failed"].is_array(), "{provision}");
    assert_eq!(provision["tenants"][0]["username"], "alice", "{provision}");
    assert_eq!(
        provision["tenants"][0]["tenant_key"], "alice",
        "{provision}"
    );
    let tenants = env.json(&["tenants"]);
    let created = tenants["tenants"][0]["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let refresh = env.json(&["refresh", "--all"]);
    assert!(refresh["failed"].is_array(), "{refresh}");
    let migrate = env.json(&["migrate", "--all"]);
    assert!(migrate["failed"].is_array(), "{migrate}");
    let deprovision = env.json(&["deprovision", "bob", "--yes"]);
    assert!(deprovision["failed"].is_array(), "{deprovision}");
    assert_eq!(deprovision["tenants"][0]["username"], "bob");
    let status = env.json(&["status"]);
    assert!(status["failed"].is_array(), "{status}");
    // A failure is a document too (a `| jq` step gets one), and so are the
    // commands that print nothing but a line otherwise.
    for (args, code) in [
        (&["where", "nobody"][..], 2),
        (&["provision", "Bad!"], 2),
        (&["keys", "rotate", "--no-such-option"], 2),
        (&["databases", "drain", "nosuch"], 2),
        (&["import", "/tmp"], 2),
        (&["export", "alice", "--out", "-"], 2),
    ] {
        let (got, doc) = env.json_run(args);
        assert_eq!(got, Some(code), "{args:?}: {doc}");
        assert!(doc["error"].is_string(), "{args:?}: {doc}");
        assert_eq!(doc["exit_code"], code, "{args:?}: {doc}");
        assert!(doc["failed"].is_array(), "{args:?}: {doc}");
    }
    env.ok(&[
        "databases",
        "add",
        "d1",
        env.path().join("d1").to_str().unwrap(),
    ]);
    let listed = env.json(&["databases", "list"]);
    assert!(listed["databases"].is_array(), "{listed}");
    let drained = env.json(&["databases", "drain", "d1"]);
    assert_eq!(drained["state"], "draining", "{drained}");
    let removed = env.json(&["databases", "remove", "d1"]);
    assert_eq!(removed["removed"], true, "{removed}");
    assert!(!env.path().join("-").exists(), "no file named -");
}

// ---------------------------------------------------------------------------
// 11. Connections killed by the server during refresh and deprovision: only
//     the tenants in flight fail, the workers reconnect for the rest.

#[test]
fn lost_connections_fail_only_in_flight_tenants_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lostconn2");
    let names: Vec<String> = (0..150).map(|i| format!("l{i:03}")).collect();
    let file = env.path().join("l.txt");
    std::fs::write(&file, names.join("\n")).unwrap();
    env.ok(&[
        "provision",
        "--jobs",
        "2",
        "--from-file",
        file.to_str().unwrap(),
    ]);
    let kill_workers = || {
        env.system_rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pathfinder-db' AND datname = current_database() \
             AND pid <> pg_backend_pid()",
        );
    };
    let refresh_audits = || {
        env.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.refresh'")[0][0]
            .parse::<usize>()
            .unwrap()
    };
    for (what, mut args) in [
        ("refresh", vec!["refresh", "--all", "--jobs", "2"]),
        ("deprovision", vec!["deprovision", "--yes", "--jobs", "2"]),
    ] {
        if what == "deprovision" {
            args.extend(names.iter().take(120).map(String::as_str));
        }
        let child = env
            .std_cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the run is under way, then cut every worker's connection.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = if what == "refresh" {
                refresh_audits()
            } else {
                env.system_rows("SELECT COUNT(*) FROM pf_tenants WHERE status = 'deprovisioned'")[0]
                    [0]
                .parse()
                .unwrap()
            };
            if done >= 10 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_workers();
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        let failed = err.lines().filter(|l| l.starts_with("error: l")).count();
        match out.status.code() {
            Some(0) => {}
            Some(3) => assert!(
                failed <= 4,
                "{what}: only the tenants in flight fail ({failed}): {err}"
            ),
            other => panic!("{what}: unexpected exit {other:?}: {err}"),
        }
    }
    // The same commands again finish the job.
    env.ok(&["refresh", "--all"]);
    let mut args = vec!["deprovision", "--yes"];
    args.extend(names.iter().take(120).map(String::as_str));
    env.ok(&args);
    let status = env.json(&["status"]);
    assert_eq!(status["tenants"], 30, "{status}");
}
