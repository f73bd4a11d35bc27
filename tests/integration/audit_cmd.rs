//! `pathfinder-db audit`: the audit log after real commands, filtered by
//! user, action and time, newest first, in a table or JSON; `--follow`
//! seeing rows written after it started; bad input; and that reading the log
//! changes nothing and creates nothing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::{self, Env};

/// Rows the test writes itself, at fixed times (the real commands' rows are
/// stamped now): a sweep of alice's table, a row carrying erin's pf_users id
/// only, and two actions that a prefix with an unescaped `_` would confuse.
const SEEDED: &str = "
INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, request_path, response_status,
    execution_time_ms, error_message, created_at, details)
VALUES ('seed-1', NULL, 'retention.sweep', 'table', 'pf_user_alice_experiences', 'retention', 200,
    1234, NULL, '2020-01-01 00:00:00', '{\"archived\": 3, \"deleted\": 0}');
INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, request_path, response_status,
    execution_time_ms, error_message, created_at)
VALUES ('seed-2', 'u-erin', 'key.rotate', 'encryption_key', '1 key(s) to master key m2', 'keys', 200,
    5, NULL, '2020-01-01 12:00:00');
INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, request_path, response_status,
    execution_time_ms, error_message, created_at)
VALUES ('seed-3', NULL, 'tenant.deprovision_cancel', 'tenant', 'zed', 'deprovision', 200,
    7, NULL, '2020-01-02 00:00:00');
INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, request_path, response_status,
    execution_time_ms, error_message, created_at)
VALUES ('seed-4', NULL, 'tenant.deprovisionXcancel', 'tenant', 'zed', 'deprovision', 200,
    7, NULL, '2020-01-03 00:00:00');
";

fn entries(doc: &Json) -> Vec<Json> {
    doc["entries"]
        .as_array()
        .expect("entries is a list")
        .clone()
}

fn field(entries: &[Json], name: &str) -> Vec<String> {
    entries
        .iter()
        .map(|e| e[name].as_str().unwrap_or("").to_string())
        .collect()
}

fn audit(env: &Env, args: &[&str]) -> Vec<Json> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    entries(&env.json(&all))
}

fn log_rows(env: &Env) -> usize {
    env.system_rows("SELECT id FROM pf_audit_log").len()
}

fn audit_log(env: &Env) {
    // erin has a pf_users row: her rows carry its id.
    env.ok(&["init"]);
    env.system_exec(
        "INSERT INTO pf_users (id, username, email, password_hash) \
         VALUES ('u-erin', 'erin', 'erin@example.com', 'x')",
    );
    env.ok(&["provision", "alice", "bob", "erin"]);
    let failed = env.run(&["provision", "dave", "--tenant-key", "alice"]);
    assert!(!failed.status.success(), "the key belongs to alice");
    env.ok(&["deprovision", "bob", "--yes"]);
    env.system_exec(SEEDED);
    let total = log_rows(env);

    // Everything, newest first.
    let all = audit(env, &[]);
    assert_eq!(all.len(), total, "{all:#?}");
    let times = field(&all, "created_at");
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert_eq!(
        all[0]["action"], "tenant.deprovision",
        "the last command first"
    );
    assert_eq!(all[0]["entity_id"], "bob");
    assert_eq!(all.last().unwrap()["id"], "seed-1", "the oldest row last");
    for t in &times {
        assert!(
            t.len() >= 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
            "ISO 8601 UTC: {t}"
        );
    }
    // The JSON shape of one row.
    let sweep = all.iter().find(|e| e["id"] == "seed-1").unwrap();
    assert_eq!(sweep["created_at"], "2020-01-01T00:00:00Z");
    assert_eq!(sweep["action"], "retention.sweep");
    assert_eq!(sweep["entity_type"], "table");
    assert_eq!(sweep["outcome"], "ok");
    assert_eq!(sweep["response_status"], 200);
    assert_eq!(sweep["duration_ms"], 1234);
    assert_eq!(sweep["command"], "retention");
    assert_eq!(sweep["error"], Json::Null);
    assert_eq!(sweep["user_id"], Json::Null);
    assert_eq!(sweep["details"]["archived"], 3, "details as JSON: {sweep}");

    // --limit keeps the newest.
    let two = audit(env, &["--limit", "2"]);
    assert_eq!(field(&two, "id"), field(&all[..2], "id"));

    // --user: rows naming the user, its tables, or its pf_users id.
    let alice = audit(env, &["--user", "alice"]);
    let mut alice_ids = field(&alice, "entity_id");
    alice_ids.sort();
    assert_eq!(
        alice_ids,
        ["alice", "pf_user_alice_experiences"],
        "{alice:#?}"
    );
    let dave = audit(env, &["--user", "dave"]);
    assert_eq!(dave.len(), 1, "{dave:#?}");
    assert_eq!(dave[0]["action"], "tenant.provision");
    assert_eq!(dave[0]["outcome"], "failed");
    assert_eq!(dave[0]["response_status"], 500);
    assert!(
        dave[0]["error"].as_str().unwrap().contains("alice"),
        "{dave:#?}"
    );
    let erin = audit(env, &["--user", "erin"]);
    assert_eq!(field(&erin, "action"), ["tenant.provision", "key.rotate"]);
    assert_eq!(field(&erin, "user_id"), ["u-erin", "u-erin"]);
    // A deprovisioned user's rows stay; one never seen has none.
    assert_eq!(
        field(&audit(env, &["--user", "bob"]), "action"),
        ["tenant.deprovision", "tenant.provision"]
    );
    assert!(audit(env, &["--user", "nobody"]).is_empty());

    // --action: exact, or a prefix; `_` is no wildcard.
    let provisions = audit(env, &["--action", "tenant.provision"]);
    let mut who = field(&provisions, "entity_id");
    who.sort();
    assert_eq!(who, ["alice", "bob", "dave", "erin"]);
    let tenant_rows = audit(env, &["--action", "tenant.*"]);
    assert!(!tenant_rows.is_empty());
    assert!(
        field(&tenant_rows, "action")
            .iter()
            .all(|a| a.starts_with("tenant.")),
        "{tenant_rows:#?}"
    );
    assert_eq!(
        field(&tenant_rows, "id"),
        field(&audit(env, &["--action", "tenant."]), "id")
    );
    assert_eq!(
        field(&audit(env, &["--action", "tenant.deprovision_*"]), "id"),
        ["seed-3"]
    );
    assert_eq!(
        field(&audit(env, &["--action", "retention."]), "id"),
        ["seed-1"]
    );
    assert!(audit(env, &["--action", "tenant"]).is_empty(), "exact");

    // --since (inclusive) and --until (exclusive), dates or ages.
    let old = audit(env, &["--until", "2021-01-01"]);
    assert_eq!(field(&old, "id"), ["seed-4", "seed-3", "seed-2", "seed-1"]);
    assert_eq!(
        field(
            &audit(env, &["--since", "2020-01-01", "--until", "2020-01-02"]),
            "id"
        ),
        ["seed-2", "seed-1"],
        "a whole second at --since is in, at --until out"
    );
    assert_eq!(
        field(
            &audit(
                env,
                &[
                    "--since",
                    "2020-01-01T12:00:00Z",
                    "--until",
                    "2020-01-03 00:00:00"
                ]
            ),
            "id"
        ),
        ["seed-3", "seed-2"]
    );
    let recent = audit(env, &["--since", "1h"]);
    assert_eq!(recent.len(), total - 4, "{recent:#?}");
    assert!(audit(env, &["--until", "1h"]).len() == 4);
    // Filters combine.
    assert_eq!(
        field(
            &audit(
                env,
                &[
                    "--user",
                    "alice",
                    "--action",
                    "retention.*",
                    "--until",
                    "7d"
                ]
            ),
            "id"
        ),
        ["seed-1"]
    );

    // The table for people.
    let table = env.ok(&["audit", "--limit", "20"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{table}");
    for column in ["ACTION", "ENTITY", "OUTCOME", "DURATION", "ERROR / DETAILS"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].contains("tenant.deprovision") && lines[1].contains("bob"),
        "{table}"
    );
    let dave_line = lines
        .iter()
        .find(|l| l.contains(" dave "))
        .expect("dave's row");
    assert!(
        dave_line.contains("failed") && dave_line.contains("alice"),
        "{dave_line}"
    );
    let sweep_line = lines
        .iter()
        .find(|l| l.contains("retention.sweep"))
        .unwrap();
    assert!(
        sweep_line.contains("1.2s") && sweep_line.contains("\"archived\":3"),
        "{sweep_line}"
    );
    let none = env.ok(&["audit", "--user", "nobody"]);
    assert_eq!(none.trim(), "no audit rows match");

    // Bad input: exit 2, one line naming the problem.
    for (args, says) in [
        (vec!["--since", "yesterday"], "is not a time"),
        (vec!["--until", "90"], "is not a time"),
        (vec!["--action", "tenant%"], "is not an action"),
        (vec!["--limit", "0"], "--limit"),
        (vec!["--user", "Bad.Name"], "Bad.Name"),
        (
            vec!["--since", "1h", "--until", "2h"],
            "--since is not before --until",
        ),
        (vec!["--follow", "--until", "1h"], "--until"),
    ] {
        let mut all = vec!["audit"];
        all.extend_from_slice(&args);
        let out = env.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap_or("").contains(says),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }

    // Reading wrote nothing.
    assert_eq!(log_rows(env), total);
}

#[test]
fn audit_log_sqlite() {
    audit_log(&Env::sqlite());
}

#[test]
fn audit_log_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    audit_log(&Env::postgres(&server, "audit"));
}

/// A background `audit --follow`, killed when dropped.
struct Follow {
    child: Child,
    docs: mpsc::Receiver<Json>,
}

impl Follow {
    fn start(env: &Env, args: &[&str]) -> Follow {
        let mut child = env
            .std_cmd()
            .args(["--json", "audit", "--follow"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start audit --follow");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, docs) = mpsc::channel();
        // Each batch is one JSON document; read them as they come.
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout));
            for doc in stream.into_iter::<Json>().map_while(Result::ok) {
                if tx.send(doc).is_err() {
                    break;
                }
            }
        });
        Follow { child, docs }
    }

    fn next(&self) -> Vec<Json> {
        let doc = self
            .docs
            .recv_timeout(Duration::from_secs(30))
            .expect("a document from audit --follow within 30 s");
        entries(&doc)
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follow(env: &Env) {
    // One at a time: the newest row is bob's.
    env.ok(&["provision", "alice"]);
    env.ok(&["provision", "bob"]);
    let follow = Follow::start(env, &["--limit", "1"]);
    // First the newest row (bob's provision), then nothing until a change.
    let first = follow.next();
    assert_eq!(field(&first, "entity_id"), ["bob"], "{first:#?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        follow.docs.try_recv().is_err(),
        "nothing new, nothing printed"
    );

    env.ok(&["provision", "carol"]);
    let failed = env.run(&["provision", "dave", "--tenant-key", "alice"]);
    assert!(!failed.status.success());
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && Instant::now() < deadline {
        seen.extend(follow.next());
    }
    assert_eq!(
        field(&seen, "entity_id"),
        ["carol", "dave"],
        "oldest first, each once: {seen:#?}"
    );
    assert_eq!(field(&seen, "outcome"), ["ok", "failed"]);

    // A row that becomes visible after newer ones (on PostgreSQL a row is
    // stamped when its transaction began) still comes, once.
    let late = if env.is_sqlite() {
        "datetime('now', '-30 seconds')"
    } else {
        "LOCALTIMESTAMP - INTERVAL '30 seconds'"
    };
    env.system_exec(&format!(
        "INSERT INTO pf_audit_log (id, action, entity_type, entity_id, response_status, created_at) \
         VALUES ('late-1', 'tenant.migrate', 'tenant', 'erin', 200, {late})"
    ));
    assert_eq!(field(&follow.next(), "id"), ["late-1"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(follow.docs.try_recv().is_err(), "printed once");

    // A row stamped in the future (the application writes audit rows of
    // its users) is shown, and does not stop the rows after it from coming.
    env.system_exec(
        "INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, response_status, created_at) \
         VALUES ('future-1', '00000000-0000-4000-8000-000000000001', 'tenant.deprovision', 'tenant', 'bob', 200, '2099-01-01 00:00:00')",
    );
    assert_eq!(field(&follow.next(), "id"), ["future-1"]);
    env.ok(&["provision", "frank"]);
    assert_eq!(field(&follow.next(), "entity_id"), ["frank"]);

    // With a filter only its rows come.
    let alice_only = Follow::start(env, &["--user", "alice"]);
    assert_eq!(field(&alice_only.next(), "entity_id"), ["alice"]);
    env.ok(&["refresh", "bob"]);
    env.ok(&["refresh", "alice"]);
    let next = alice_only.next();
    assert_eq!(field(&next, "action"), ["tenant.refresh"]);
    assert_eq!(field(&next, "entity_id"), ["alice"]);
    drop(follow);
}

#[test]
fn follow_sqlite() {
    follow(&Env::sqlite());
}

#[test]
fn follow_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    follow(&Env::postgres(&server, "audit_follow"));
}

/// The table form of --follow prints the header once and each new row as it
/// comes (checked line by line, as a person at a terminal sees it).
#[test]
fn follow_table_sqlite() {
    let env = Env::sqlite();
    env.ok(&["provision", "alice"]);
    let mut child = env
        .std_cmd()
        .args(["audit", "--follow", "--action", "tenant.*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = || lines.recv_timeout(Duration::from_secs(30)).expect("a line");
    assert!(line().starts_with("TIME"));
    assert!(line().contains("alice"));
    env.ok(&["provision", "bob"]);
    let added = line();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        added.contains("tenant.provision") && added.contains("bob"),
        "{added}"
    );
}

/// Reading never creates: no SQLite file appears, and a PostgreSQL database
/// without the system schema gets none.
#[test]
fn audit_creates_nothing_sqlite() {
    let env = Env::sqlite();
    let out = env.run(&["audit"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no pathfinder-db system schema"), "{err}");
    assert!(!env.main_file().exists(), "no database file was created");
    assert!(
        std::fs::read_dir(env.path()).unwrap().next().is_none(),
        "nothing at all"
    );
}

#[test]
fn audit_creates_nothing_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "audit_none");
    let out = env.run(&["audit", "--follow"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = env.system_rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    assert!(tables.is_empty(), "nothing was created: {tables:?}");
}
