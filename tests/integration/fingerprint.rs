//! `fingerprint`: row counts and order-independent checksums per tenant and
//! table, computed in the database, and `--compare` against a file taken
//! earlier or on another copy. Each scenario runs on two deployments of the
//! same backend: two SQLite folders, or two PostgreSQL databases. (What the
//! command sends to Oracle is checked statically in `oracle_recorded`.)

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::common::{self, AssertExt, Env, on_both_backends};

/// Two tests from one body `fn(&Env, &Env)`: on two SQLite deployments, and
/// on two databases of the PostgreSQL test server (skipped without one).
macro_rules! on_two_deployments {
    ($body:ident, $sqlite:ident, $postgres:ident, $hint:literal) => {
        #[test]
        fn $sqlite() {
            $body(&Env::sqlite(), &Env::sqlite());
        }
        #[test]
        fn $postgres() {
            let Some(server) = common::postgres_url() else {
                return;
            };
            $body(
                &Env::postgres(&server, concat!($hint, "_a")),
                &Env::postgres(&server, concat!($hint, "_b")),
            );
        }
    };
}

/// `user`'s rows: three experiences, their skills, a conversation with two
/// messages; every value given (no default that depends on the time), with
/// NULLs, decimals, dates, timestamps with fractions and Unicode text.
fn rows(user: &str) -> Vec<String> {
    let p = format!("pf_user_{user}_");
    vec![
        format!(
            "INSERT INTO {p}experiences (id, title, company, location, start_date, end_date, is_current, description, created_at, updated_at) \
             VALUES ('e1', 'Engineer', 'Acme', 'Zürich', '2019-03-01', '2021-06-30', 0, 'Built things ✓', '2024-01-01 10:00:00.5', '2024-01-01 10:00:00.5')"
        ),
        format!(
            "INSERT INTO {p}experiences (id, title, company, location, start_date, end_date, is_current, description, created_at, updated_at) \
             VALUES ('e2', 'Lead', 'Beta', NULL, '2021-07-01', NULL, 1, NULL, '2024-01-02 11:00:00', '2024-01-02 11:00:00')"
        ),
        format!(
            "INSERT INTO {p}experiences (id, title, company, location, start_date, end_date, is_current, description, created_at, updated_at) \
             VALUES ('e3', 'Intern', 'Gamma', 'Lyon', '2018-01-01', '2018-12-31', 0, 'Line one\nline two', '2024-01-03 12:00:00.25', '2024-01-03 12:00:00.25')"
        ),
        format!(
            "INSERT INTO {p}skills (id, experience_id, skill_name, years_of_experience, last_used, is_primary, created_at) \
             VALUES ('s1', 'e1', 'Rust', 12.5, '2024-02-29', 1, '2024-01-01 10:00:00')"
        ),
        format!(
            "INSERT INTO {p}skills (id, experience_id, skill_name, years_of_experience, last_used, is_primary, created_at) \
             VALUES ('s2', 'e1', 'SQL', 0.1, NULL, 0, '2024-01-01 10:00:00')"
        ),
        format!(
            "INSERT INTO {p}skills (id, experience_id, skill_name, years_of_experience, last_used, is_primary, created_at) \
             VALUES ('s3', 'e2', 'Leadership', 3, '2023-12-31', 0, '2024-01-01 10:00:00')"
        ),
        format!(
            "INSERT INTO {p}chat_conversations (id, title, context, model, total_messages, created_at, updated_at) \
             VALUES ('c1', 'Hi', NULL, 'gpt-4', 2, '2024-01-05 09:00:00', '2024-01-05 09:00:00')"
        ),
        format!(
            "INSERT INTO {p}chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             VALUES ('m1', 'c1', 'user', 'Hello', 5, '2024-01-05 09:00:01')"
        ),
        format!(
            "INSERT INTO {p}chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             VALUES ('m2', 'c1', 'assistant', 'Grüezi 😀', NULL, '2024-01-05 09:00:02')"
        ),
    ]
}

/// Provisions alice and bob and inserts their rows: in order, or each
/// table's rows in reverse order (parents still before children).
fn seed(env: &Env, reversed: bool) {
    env.ok(&["provision", "alice", "bob"]);
    for user in ["alice", "bob"] {
        let mut statements = rows(user);
        if reversed {
            // Experiences 0..3, skills 3..6, the conversation, messages 7..9.
            statements[0..3].reverse();
            statements[3..6].reverse();
            statements[7..9].reverse();
        }
        env.tenant_exec(user, &statements.join(";\n"));
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tenants of a fingerprint document (what two copies must agree on).
fn tenants(doc: &Json) -> Json {
    doc["tenants"].clone()
}

fn table<'a>(doc: &'a Json, user: &str, table: &str) -> &'a Json {
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["username"] == user)
        .and_then(|t| {
            t["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["table"] == table)
        })
        .unwrap_or_else(|| panic!("no table {table} of {user} in {doc}"))
}

/// A copy of `file` in `env`'s folder (the file taken on another copy).
fn copy_into(env: &Env, file: &Path) -> PathBuf {
    let to = env.path().join(file.file_name().unwrap());
    std::fs::copy(file, &to).unwrap();
    to
}

// ---------------------------------------------------------------------------
// 1. The same rows inserted in another order give the same fingerprint.

fn same_rows_in_another_order(a: &Env, b: &Env) {
    seed(a, false);
    seed(b, true);
    let fa = a.json(&["fingerprint", "--all"]);
    let fb = b.json(&["fingerprint", "--all"]);
    assert_eq!(fa["dialect"], a.dialect());
    assert_eq!(tenants(&fa), tenants(&fb), "a: {fa}\nb: {fb}");
    // The figures are the rows: counted, and a checksum that is not the
    // empty table's; the user's tables only.
    let skills = table(&fa, "alice", "skills");
    assert_eq!(skills["rows"], 3);
    assert_ne!(skills["checksum"], "0000000000000000");
    assert_eq!(table(&fa, "alice", "pert_responses")["rows"], 0);
    assert_eq!(
        table(&fa, "alice", "pert_responses")["checksum"],
        "0000000000000000"
    );
    let names: Vec<&str> = fa["tenants"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("career_summary") || n.contains("history"))
    );
    // Alice and bob hold the same rows in tables of other names: the names
    // are not hashed, the rows are.
    assert_eq!(
        fa["tenants"][0]["tables"], fa["tenants"][1]["tables"],
        "{fa}"
    );

    // The file taken on one copy compares equal on the other.
    let file = a.path().join("a.json");
    a.ok(&["fingerprint", "--all", "--out", path(&file)]);
    let copied = copy_into(b, &file);
    let out = b
        .cmd()
        .args(["fingerprint", "--compare", path(&copied)])
        .assert()
        .code(0);
    assert!(
        stdout(out.get_output()).contains("2 tenant(s) compared"),
        "{}",
        stdout(out.get_output())
    );
    assert!(stdout(out.get_output()).contains(": equal"));

    // The human table lists every table with its rows and checksum.
    let text = a.ok(&["fingerprint", "alice"]);
    let line = text
        .lines()
        .find(|l| l.contains(" skills ") && l.starts_with("alice"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(skills["checksum"].as_str().unwrap()),
        "{text}"
    );
}

on_two_deployments!(
    same_rows_in_another_order,
    same_rows_in_another_order_give_the_same_fingerprint_sqlite,
    same_rows_in_another_order_give_the_same_fingerprint_postgres,
    "fp_order"
);

// ---------------------------------------------------------------------------
// 2. --compare catches one changed value and one deleted row.

fn compare_catches_changes(env: &Env) {
    seed(env, false);
    let file = env.path().join("before.json");
    env.ok(&["fingerprint", "--all", "--out", path(&file)]);

    // One value changed in one row of one table of one tenant.
    env.tenant_exec(
        "alice",
        "UPDATE pf_user_alice_skills SET skill_name = 'Go' WHERE id = 's2'",
    );
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file)])
        .assert()
        .code(1);
    let text = stdout(out.get_output());
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("alice:")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("alice: table skills: expected 3 rows, checksum "),
        "{text}"
    );
    assert!(lines[0].contains("found 3 rows, checksum "), "{text}");
    assert!(!text.contains("bob:"), "{text}");
    assert!(text.contains("1 difference(s) in 1 tenant(s)"), "{text}");
    let out = env
        .cmd()
        .args(["--json", "fingerprint", "--compare", path(&file)])
        .assert()
        .code(1);
    let doc: Json = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["equal"], false);
    let diffs = doc["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{doc}");
    assert_eq!(diffs[0]["kind"], "table");
    assert_eq!(diffs[0]["username"], "alice");
    assert_eq!(diffs[0]["table"], "skills");
    assert_eq!(diffs[0]["expected_rows"], diffs[0]["found_rows"]);
    assert_ne!(diffs[0]["expected_checksum"], diffs[0]["found_checksum"]);

    // The value put back: equal again (the checksum is of the rows alone).
    env.tenant_exec(
        "alice",
        "UPDATE pf_user_alice_skills SET skill_name = 'SQL' WHERE id = 's2'",
    );
    env.cmd()
        .args(["fingerprint", "--compare", path(&file)])
        .assert()
        .code(0);

    // One row deleted from bob's messages.
    env.tenant_exec(
        "bob",
        "DELETE FROM pf_user_bob_chat_messages WHERE id = 'm1'",
    );
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file), "bob"])
        .assert()
        .code(1);
    let text = stdout(out.get_output());
    assert!(
        text.contains("bob: table chat_messages: expected 2 rows, checksum "),
        "{text}"
    );
    assert!(text.contains("found 1 rows"), "{text}");
    // Only bob was asked for.
    assert!(text.contains("1 tenant(s) compared"), "{text}");
    env.cmd()
        .args(["fingerprint", "--compare", path(&file), "alice"])
        .assert()
        .code(0);

    // A tenant of the file that is gone here is a difference.
    env.ok(&["deprovision", "alice", "--yes"]);
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file)])
        .assert()
        .code(1);
    let text = stdout(out.get_output());
    assert!(
        text.contains("alice: in the fingerprint, missing here"),
        "{text}"
    );
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file), "alice"])
        .assert()
        .code(1);
    assert!(
        stdout(out.get_output()).contains("alice: in the fingerprint, missing here"),
        "{}",
        stdout(out.get_output())
    );
    // And with --all, a tenant here that the file lacks.
    env.ok(&["provision", "carol"]);
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file), "--all"])
        .assert()
        .code(1);
    assert!(
        stdout(out.get_output()).contains("carol: here, not in the fingerprint"),
        "{}",
        stdout(out.get_output())
    );
}

on_both_backends!(
    compare_catches_changes,
    compare_catches_a_changed_value_and_a_deleted_row_sqlite,
    compare_catches_a_changed_value_and_a_deleted_row_postgres,
    "fp_change"
);

// ---------------------------------------------------------------------------
// 3. Backup verification: fingerprint, export, import into another
//    deployment, compare: equal. Archived rows are part of both.

fn archive_old_conversation(env: &Env) {
    let deleted = crate::retention::ago(60);
    env.tenant_exec(
        "alice",
        &format!(
            "INSERT INTO pf_user_alice_chat_conversations (id, title, model, total_messages, created_at, updated_at, deleted_at) \
             VALUES ('c0', 'Old', 'gpt-4', 1, '2023-01-01 08:00:00', '2023-01-01 08:00:00', '{deleted}');\n\
             INSERT INTO pf_user_alice_chat_messages (id, conversation_id, role, content, created_at, deleted_at) \
             VALUES ('m0', 'c0', 'user', 'Bye', '2023-01-01 08:00:01', '{deleted}')"
        ),
    );
    let dir = env.path().join("policies-fp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        crate::retention::default_policies().join("chat-deleted.toml"),
        dir.join("chat-deleted.toml"),
    )
    .unwrap();
    crate::retention::apply(env, &dir);
    env.ok(&["retention", "run", "--all"]);
}

fn export_import_compare(a: &Env, b: &Env) {
    seed(a, false);
    archive_old_conversation(a);
    let print = a.path().join("alice.fp.json");
    let before = a.json(&["fingerprint", "alice", "--out", path(&print)]);
    let archived = table(&before, "alice", "chat_conversations_archive");
    assert_eq!(archived["rows"], 1, "{before}");
    assert_eq!(table(&before, "alice", "chat_messages_archive")["rows"], 1);
    assert_eq!(table(&before, "alice", "chat_conversations")["rows"], 1);

    let export = a.path().join("alice.jsonl");
    a.ok(&["export", "alice", "--out", path(&export)]);
    b.ok(&["init"]);
    b.ok(&["import", path(&export)]);
    let copied = copy_into(b, &print);
    let out = b
        .cmd()
        .args(["fingerprint", "--compare", path(&copied)])
        .assert()
        .code(0);
    assert!(
        stdout(out.get_output()).contains("1 tenant(s) compared"),
        "{}",
        stdout(out.get_output())
    );
    let after = b.json(&["fingerprint", "alice"]);
    assert_eq!(tenants(&before), tenants(&after));
}

on_two_deployments!(
    export_import_compare,
    export_then_import_into_another_deployment_compares_equal_sqlite,
    export_then_import_into_another_deployment_compares_equal_postgres,
    "fp_backup"
);

// ---------------------------------------------------------------------------
// 4. --out never replaces a file unless --force; it is private to its owner.

fn out_refuses_to_overwrite(env: &Env) {
    seed(env, false);
    // Users or --all (or a file to compare with) must be given.
    env.cmd().args(["fingerprint"]).assert().code(2);
    let file = env.path().join("prints.json");
    std::fs::write(&file, "precious").unwrap();
    let out = env
        .cmd()
        .args(["fingerprint", "--all", "--out", path(&file)])
        .assert()
        .code(2);
    assert!(
        stderr(out.get_output()).contains("exists already"),
        "{}",
        stderr(out.get_output())
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

    env.ok(&["fingerprint", "--all", "--out", path(&file), "--force"]);
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], "pathfinder-db-fingerprint");
    assert_eq!(doc["tenants"].as_array().unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pathfinder-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A file of another dialect is refused: checksums compare in one dialect.
    let other = env.path().join("other.json");
    let mut foreign = doc.clone();
    foreign["dialect"] = Json::from(if env.is_sqlite() {
        "postgres"
    } else {
        "sqlite"
    });
    std::fs::write(&other, foreign.to_string()).unwrap();
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&other)])
        .assert()
        .code(2);
    assert!(
        stderr(out.get_output()).contains("same dialect"),
        "{}",
        stderr(out.get_output())
    );
}

on_both_backends!(
    out_refuses_to_overwrite,
    out_never_replaces_a_file_without_force_sqlite,
    out_never_replaces_a_file_without_force_postgres,
    "fp_out"
);

// ---------------------------------------------------------------------------
// 5. A tenant that cannot be read is named, the others are done: exit 3.

fn lose_bobs_tables(env: &Env) {
    if env.is_sqlite() {
        std::fs::remove_file(common::sqlite_tenant_file(env.path(), "bob")).unwrap();
    } else {
        env.system_exec(
            "DO $$ DECLARE r record; BEGIN \
             FOR r IN SELECT tablename FROM pg_tables WHERE tablename LIKE 'pf\\_user\\_bob\\_%' LOOP \
             EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(r.tablename) || ' CASCADE'; END LOOP; END $$",
        );
    }
}

fn failed_tenant_is_partial(env: &Env) {
    seed(env, false);
    let file = env.path().join("before.json");
    env.ok(&["fingerprint", "--all", "--out", path(&file)]);
    lose_bobs_tables(env);
    let out = env
        .cmd()
        .args(["--json", "fingerprint", "--all"])
        .assert()
        .code(3);
    let doc: Json = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["tenants"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["tenants"][0]["username"], "alice");
    assert_eq!(doc["failed"][0]["username"], "bob", "{doc}");
    assert!(
        stderr(out.get_output()).contains("bob"),
        "{}",
        stderr(out.get_output())
    );
    // Compared: alice is equal, bob failed (not a difference): exit 3.
    let out = env
        .cmd()
        .args(["fingerprint", "--compare", path(&file)])
        .assert()
        .code(3);
    assert!(
        stderr(out.get_output()).contains("bob"),
        "{}",
        stderr(out.get_output())
    );
    assert!(
        !stdout(out.get_output()).contains("alice:"),
        "{}",
        stdout(out.get_output())
    );
}

on_both_backends!(
    failed_tenant_is_partial,
    a_tenant_that_cannot_be_read_is_named_and_the_run_is_partial_sqlite,
    a_tenant_that_cannot_be_read_is_named_and_the_run_is_partial_postgres,
    "fp_fail"
);
