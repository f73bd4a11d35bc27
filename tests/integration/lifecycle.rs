//! The whole life of tenants through the built binary, on SQLite (always) and
//! PostgreSQL (when `PATHFINDER_TEST_POSTGRES_URL` is set): init, provision,
//! rows written by the application, refresh of the career summary, deprovision
//! with archive and with export, the registry and the audit log.
//!
//! The same test body runs on both backends; only the way the test reaches the
//! rows differs (SQLite: a file per tenant; PostgreSQL: one database).

use crate::common::{self, AssertExt};

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, Env, pathfinder, pg_rows, sqlite_rows, sqlite_tenant_file};
use serde_json::Value as Json;
use time::Date;

use pathfinder_db::schema::tenant::TENANT_TABLES;

impl Env {
    /// Names of the tables and views of tenant `key` found in the catalog.
    fn tenant_relations(&self, key: &str) -> BTreeSet<String> {
        let prefix = format!("pf_user_{key}_");
        let names: Vec<String> = match &self.backend {
            Backend::Sqlite => {
                let file = sqlite_tenant_file(self.path(), key);
                if !file.exists() {
                    return BTreeSet::new();
                }
                sqlite_rows(
                    &file,
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
                )
                .into_iter()
                .map(|r| r[0].clone())
                .collect()
            }
            Backend::Postgres(_) => pg_rows(
                &mut self.pg(),
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm', 'v', 'p') \
                 AND c.relname LIKE 'pf\\_user\\_%'",
            )
            .into_iter()
            .map(|r| r[0].clone())
            .collect(),
        };
        names
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// The registry as `tenants --json` (with `--all`: deprovisioned ones too) shows it.
    fn tenants(&self, all: bool) -> BTreeMap<String, Json> {
        let mut cmd = self.cmd();
        cmd.args(["tenants", "--json"]);
        if all {
            cmd.arg("--all");
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        let list: Json = serde_json::from_slice(&out).expect("tenants --json prints JSON");
        list["tenants"]
            .as_array()
            .expect("a JSON array")
            .iter()
            .map(|t| (t["username"].as_str().unwrap().to_string(), t.clone()))
            .collect()
    }
}

fn stdout_of(assert: &common::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

fn stderr_of(assert: &common::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// The latest tenant schema version, as `render --json` reports it.
fn latest_tenant_version(env: &Env) -> i64 {
    let out = pathfinder(env.path())
        .args(["render", "alice", "--json", "--dialect", env.dialect()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: Json = serde_json::from_slice(&out).expect("render --json");
    doc["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|m| m["version"].as_i64().expect("version"))
        .max()
        .expect("at least one tenant migration")
}

/// The objects every provisioned tenant has: its nine tables and career_summary.
fn expected_objects(key: &str) -> BTreeSet<String> {
    TENANT_TABLES
        .iter()
        .copied()
        .chain(["career_summary"])
        .map(|t| format!("pf_user_{key}_{t}"))
        .collect()
}

/// A position: id, company, start, end (None: open-ended, runs until today).
type Position = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// Alice: two positions at Acme (one still open) and one at Globex in between.
const ALICE: &[Position] = &[
    ("a-exp-1", "Acme", "2015-03-01", Some("2018-06-30")),
    ("a-exp-2", "Globex", "2018-07-01", Some("2021-12-31")),
    ("a-exp-3", "Acme", "2022-01-15", None),
];

/// Inserts positions, skills pointing at them, and a conversation with messages.
fn insert_sample(env: &Env, key: &str, positions: &[Position]) {
    let p = format!("pf_user_{key}_");
    let mut sql = String::new();
    for (id, company, start, end) in positions {
        let (end, current) = match end {
            Some(e) => (format!("'{e}'"), 0),
            None => ("NULL".to_string(), 1),
        };
        sql.push_str(&format!(
            "INSERT INTO {p}experiences (id, title, company, start_date, end_date, is_current) \
             VALUES ('{id}', 'Engineer', '{company}', '{start}', {end}, {current});\n"
        ));
    }
    let first = positions[0].0;
    sql.push_str(&format!(
        "INSERT INTO {p}skills (id, experience_id, skill_name, skill_category) \
         VALUES ('{key}-skill-1', '{first}', 'Rust', 'language');\n\
         INSERT INTO {p}chat_conversations (id, title) VALUES ('{key}-conv-1', 'Next steps');\n\
         INSERT INTO {p}chat_messages (id, conversation_id, role, content) VALUES \
         ('{key}-msg-1', '{key}-conv-1', 'user', 'Where do I go from here?'), \
         ('{key}-msg-2', '{key}-conv-1', 'assistant', 'Let us look at your experience.');\n"
    ));
    env.tenant_exec(key, &sql);
}

/// The ids of each tenant table that holds rows after `insert_sample`.
fn sample_ids(key: &str, positions: &[Position]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut ids = BTreeMap::new();
    ids.insert(
        "experiences",
        positions.iter().map(|p| p.0.to_string()).collect(),
    );
    ids.insert("skills", BTreeSet::from([format!("{key}-skill-1")]));
    ids.insert(
        "chat_conversations",
        BTreeSet::from([format!("{key}-conv-1")]),
    );
    ids.insert(
        "chat_messages",
        BTreeSet::from([format!("{key}-msg-1"), format!("{key}-msg-2")]),
    );
    ids
}

fn date(s: &str) -> Date {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).expect("a date")
}

/// Years of experience as the README defines them (summed days / 365.25,
/// rounded to two places), with an open position running until `today`.
fn expected_years(positions: &[Position], today: Date) -> f64 {
    let days: i64 = positions
        .iter()
        .map(|(_, _, start, end)| (end.map(date).unwrap_or(today) - date(start)).whole_days())
        .sum();
    (days as f64 / 365.25 * 100.0).round() / 100.0
}

/// Asserts the four career summary figures of `key`.
fn assert_summary(env: &Env, key: &str, positions: &[Position]) {
    let rows = env.tenant_rows(
        key,
        &format!(
            "SELECT total_positions, total_companies, career_start_date, total_years_experience \
             FROM pf_user_{key}_career_summary"
        ),
    );
    assert_eq!(
        rows.len(),
        1,
        "career_summary of {key} has one row: {rows:?}"
    );
    let row = &rows[0];
    let companies: BTreeSet<&str> = positions.iter().map(|p| p.1).collect();
    let start = positions.iter().map(|p| p.2).min().unwrap();
    assert_eq!(row[0], positions.len().to_string(), "total_positions");
    assert_eq!(row[1], companies.len().to_string(), "total_companies");
    assert_eq!(row[2], start, "career_start_date");
    let years: f64 = row[3].parse().expect("total_years_experience is a number");
    // "Today" is the database's: allow for the clock being on the other side of midnight.
    let today = time::OffsetDateTime::now_utc().date();
    let candidates: Vec<f64> = [-1, 0, 1]
        .iter()
        .map(|d| expected_years(positions, today + time::Duration::days(*d)))
        .collect();
    assert!(
        candidates.iter().any(|c| (c - years).abs() < 1e-9),
        "total_years_experience of {key} is {years}, expected one of {candidates:?} (days / 365.25, 2 places)"
    );
}

/// The whole lifecycle, the same on every backend.
fn lifecycle(env: &Env) {
    let version = latest_tenant_version(env);
    let agent = format!("pathfinder-db/{}", env!("CARGO_PKG_VERSION"));

    env.cmd().arg("init").assert().success();
    let out = env
        .cmd()
        .args(["provision", "alice", "bob", "carol"])
        .assert()
        .success();
    let text = stdout_of(&out);
    for user in ["alice", "bob", "carol"] {
        assert!(
            text.contains(&format!("provisioned {user}")),
            "provision says it provisioned {user}: {text}"
        );
        let have = env.tenant_relations(user);
        assert!(
            expected_objects(user).is_subset(&have),
            "{user} has its nine tables and career_summary: {have:?}"
        );
    }

    insert_sample(env, "alice", ALICE);
    let bob: &[Position] = &[
        ("b-exp-1", "Initech", "2010-01-01", Some("2012-01-01")),
        ("b-exp-2", "Hooli", "2012-02-01", None),
    ];
    insert_sample(env, "bob", bob);
    let carol: &[Position] = &[("c-exp-1", "Umbrella", "2019-05-01", Some("2020-05-01"))];
    insert_sample(env, "carol", carol);

    // refresh recomputes alice's summary, and only hers.
    env.cmd().args(["refresh", "alice"]).assert().success();
    assert_summary(env, "alice", ALICE);
    let bob_summary = env.tenant_rows(
        "bob",
        "SELECT total_positions FROM pf_user_bob_career_summary",
    );
    assert_eq!(
        bob_summary,
        vec![vec!["0".to_string()]],
        "refresh alice left bob's summary alone"
    );

    // Provisioning again changes nothing and says so.
    let out = env.cmd().args(["provision", "alice"]).assert().success();
    let text = stdout_of(&out);
    assert!(text.contains("already exists"), "re-provision: {text}");
    assert!(!text.contains("provisioned alice"), "re-provision: {text}");

    // A destructive command without --yes and without a terminal refuses: exit 2.
    let out = env.cmd().args(["deprovision", "alice"]).assert().code(2);
    assert!(
        stderr_of(&out).contains("--yes"),
        "the refusal says how to confirm: {}",
        stderr_of(&out)
    );
    assert!(expected_objects("alice").is_subset(&env.tenant_relations("alice")));
    assert_eq!(
        env.tenant_rows("alice", "SELECT COUNT(*) FROM pf_user_alice_experiences"),
        vec![vec!["3".to_string()]]
    );
    assert_eq!(env.tenants(false)["alice"]["status"], "active");

    // deprovision --archive: every row lands in an archive table, the live tables go.
    let bob_ids = sample_ids("bob", bob);
    let bob_rows: usize = bob_ids.values().map(|s| s.len()).sum();
    let out = env
        .cmd()
        .args(["deprovision", "bob", "--archive", "--yes"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("{bob_rows} rows archived")),
        "deprovision reports the archived rows: {text}"
    );
    let archives: BTreeSet<String> = TENANT_TABLES
        .iter()
        .map(|t| format!("pf_user_bob_{t}_archive"))
        .collect();
    assert_eq!(
        env.tenant_relations("bob"),
        archives,
        "only bob's archive tables are left"
    );
    for table in TENANT_TABLES {
        let archive = format!("pf_user_bob_{table}_archive");
        let ids: BTreeSet<String> = env
            .tenant_rows("bob", &format!("SELECT id FROM {archive}"))
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let want = bob_ids.get(table).cloned().unwrap_or_default();
        assert_eq!(ids, want, "{archive} holds exactly bob's rows");
        let undated = env.tenant_rows(
            "bob",
            &format!("SELECT COUNT(*) FROM {archive} WHERE archived_at IS NULL"),
        );
        assert_eq!(
            undated,
            vec![vec!["0".to_string()]],
            "{archive}.archived_at is set"
        );
    }
    let companies = env.tenant_rows(
        "bob",
        "SELECT company FROM pf_user_bob_experiences_archive ORDER BY id",
    );
    assert_eq!(
        companies,
        vec![vec!["Initech".to_string()], vec!["Hooli".to_string()]],
        "archived rows keep their values"
    );
    let all = env.tenants(true);
    assert_eq!(all["bob"]["status"], "deprovisioned");
    assert!(
        !env.tenants(false).contains_key("bob"),
        "tenants without --all hides bob"
    );

    // deprovision --export: JSON Lines with every row, then the tenant is gone.
    let export = env.path().join("carol.jsonl");
    let out = env
        .cmd()
        .args(["deprovision", "carol", "--yes", "--export"])
        .arg(&export)
        .assert()
        .success();
    let carol_ids = sample_ids("carol", carol);
    let carol_rows: usize = carol_ids.values().map(|s| s.len()).sum();
    assert!(
        stdout_of(&out).contains(&format!("{carol_rows} rows exported")),
        "deprovision reports the exported rows: {}",
        stdout_of(&out)
    );
    let text = std::fs::read_to_string(&export).expect("the export file exists");
    let (header, manifest) =
        pathfinder_db::tenants::export::verify(&export).expect("the export matches its manifest");
    assert_eq!(header.username, "carol");
    assert_eq!(header.schema_version, version);
    assert_eq!(manifest.rows as usize, carol_rows, "{manifest:?}");
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("{\"header\":"), "{}", lines[0]);
    assert!(lines[lines.len() - 1].starts_with("{\"manifest\":"));
    for line in &lines[1..lines.len() - 1] {
        let doc: Json = serde_json::from_str(line).expect("each line is a JSON document");
        let table = doc["table"].as_str().expect("table").to_string();
        let row = &doc["row"];
        if table == "experiences" {
            assert_eq!(row["company"], "Umbrella", "exported values: {line}");
            assert_eq!(row["start_date"], "2019-05-01", "exported dates: {line}");
        }
        if table == "chat_messages" && row["id"] == "carol-msg-1" {
            assert_eq!(row["content"], "Where do I go from here?");
        }
        exported
            .entry(table)
            .or_default()
            .insert(row["id"].as_str().expect("id").to_string());
    }
    let want: BTreeMap<String, BTreeSet<String>> = carol_ids
        .into_iter()
        .map(|(t, ids)| (t.to_string(), ids))
        .collect();
    assert_eq!(exported, want, "the export holds exactly carol's rows");
    assert!(
        env.tenant_relations("carol").is_empty(),
        "carol's objects are gone"
    );
    if matches!(env.backend, Backend::Sqlite) {
        assert!(!sqlite_tenant_file(env.path(), "carol").exists());
    }

    // The registry: alice active at the latest version; bob and carol deprovisioned.
    let active = env.tenants(false);
    assert_eq!(active.keys().collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(active["alice"]["status"], "active");
    assert_eq!(active["alice"]["schema_version"], version);
    assert_eq!(active["alice"]["tenant_key"], "alice");
    assert_eq!(env.tenants(true)["carol"]["status"], "deprovisioned");

    // Failed commands: a tenant key that belongs to alice, a user that does not exist.
    let out = env
        .cmd()
        .args(["provision", "dave", "--tenant-key", "alice"])
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(err.contains("alice"), "the error names the owner: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        !env.tenants(true).contains_key("dave"),
        "dave is not registered"
    );
    // An unknown user is a usage error that changes nothing.
    env.cmd()
        .args(["deprovision", "nobody", "--yes"])
        .assert()
        .code(2);

    // The audit log.
    let audit = env.system_rows(
        "SELECT action, entity_id, user_agent, response_status, COALESCE(error_message, '') \
         FROM pf_audit_log",
    );
    let count = |action: &str, entity: &str, status: &str| {
        audit
            .iter()
            .filter(|r| r[0] == action && r[1] == entity && r[3] == status)
            .count()
    };
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            count("tenant.provision", user, "200"),
            1,
            "one provision row for {user}: {audit:?}"
        );
    }
    assert_eq!(count("tenant.refresh", "alice", "200"), 1, "{audit:?}");
    assert_eq!(count("tenant.deprovision", "bob", "200"), 1, "{audit:?}");
    assert_eq!(count("tenant.deprovision", "carol", "200"), 1, "{audit:?}");
    assert_eq!(
        audit
            .iter()
            .filter(|r| r[0] == "tenant.deprovision" && r[1] == "alice")
            .count(),
        0,
        "the refused deprovision of alice wrote nothing: {audit:?}"
    );
    let failed: Vec<_> = audit.iter().filter(|r| r[1] == "dave").collect();
    assert_eq!(failed.len(), 1, "one audit row for dave: {audit:?}");
    assert_eq!(failed[0][0], "tenant.provision");
    assert_eq!(failed[0][3], "500");
    assert!(
        failed[0][4].contains("alice"),
        "error_message: {:?}",
        failed[0]
    );
    assert_eq!(
        audit.iter().filter(|r| r[1] == "nobody").count(),
        0,
        "the refused deprovision of an unknown user changed (and audited) nothing: {audit:?}"
    );
    for row in &audit {
        assert_eq!(row[2], agent, "user_agent of {row:?}");
        match row[3].as_str() {
            "200" => assert!(row[4].is_empty(), "a success has no error: {row:?}"),
            "500" => assert!(!row[4].is_empty(), "a failure says why: {row:?}"),
            other => panic!("unexpected response_status {other}: {row:?}"),
        }
    }
}

#[test]
fn lifecycle_sqlite() {
    let env = Env::sqlite();
    lifecycle(&env);
    // SQLite keeps each tenant in a file of its own: bob's archive stays, carol's file is gone.
    assert!(sqlite_tenant_file(env.path(), "alice").exists());
    assert!(sqlite_tenant_file(env.path(), "bob").exists());
}

#[test]
fn lifecycle_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lifecycle");
    lifecycle(&env);
}

/// `init --with-reference-data` twice loads the catalogs once.
fn reference_data_once(env: &Env) {
    let counts = || {
        env.system_rows(
            "SELECT (SELECT COUNT(*) FROM pf_ref_skills_catalog), \
                    (SELECT COUNT(*) FROM pf_ref_career_paths)",
        )[0]
        .iter()
        .map(|c| c.parse::<i64>().expect("a count"))
        .collect::<Vec<_>>()
    };
    let loaded = |out: &[u8]| -> (i64, i64) {
        let doc: Json = serde_json::from_slice(out).expect("init --json");
        (
            doc["reference_data"]["skills"].as_i64().expect("skills"),
            doc["reference_data"]["career_paths"]
                .as_i64()
                .expect("career_paths"),
        )
    };
    let first = env
        .cmd()
        .args(["init", "--with-reference-data", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let after_first = counts();
    assert!(
        after_first.iter().all(|&c| c > 0),
        "the catalogs are loaded: {after_first:?}"
    );
    assert_eq!(loaded(&first), (after_first[0], after_first[1]));
    let second = env
        .cmd()
        .args(["init", "--with-reference-data", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(loaded(&second), (0, 0), "the second run adds nothing");
    assert_eq!(counts(), after_first, "the counts are stable");
}

#[test]
fn reference_data_loads_once_sqlite() {
    reference_data_once(&Env::sqlite());
}

#[test]
fn reference_data_loads_once_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    reference_data_once(&Env::postgres(&server, "refdata"));
}

const LONG_NAME: &str = "a_very_long_user_name_for_postgres";

/// A username too long for the dialect is provisioned under an explicit tenant
/// key; every later command takes the username and finds the key in the registry.
fn long_username_with_key(env: &Env) {
    let out = env
        .cmd()
        .args(["provision", LONG_NAME, "--tenant-key", "avlu"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("tenant key avlu"),
        "{}",
        stdout_of(&out)
    );
    assert!(expected_objects("avlu").is_subset(&env.tenant_relations("avlu")));
    assert!(
        env.tenant_relations(LONG_NAME).is_empty(),
        "nothing is named after the username"
    );
    let registry = env.tenants(false);
    assert_eq!(registry[LONG_NAME]["tenant_key"], "avlu");
    assert_eq!(registry[LONG_NAME]["status"], "active");

    // Repeating the provisioning with the same key is a no-op.
    let out = env
        .cmd()
        .args(["provision", LONG_NAME, "--tenant-key", "avlu"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("already exists"),
        "{}",
        stdout_of(&out)
    );
    let positions: &[Position] = &[("l-exp-1", "Acme", "2020-01-01", Some("2021-01-01"))];
    insert_sample(env, "avlu", positions);
    env.cmd().args(["refresh", LONG_NAME]).assert().success();
    assert_summary(env, "avlu", positions);

    env.cmd()
        .args(["deprovision", LONG_NAME, "--yes"])
        .assert()
        .success();
    assert!(
        env.tenant_relations("avlu").is_empty(),
        "the tenant's objects are gone"
    );
    assert_eq!(env.tenants(true)[LONG_NAME]["status"], "deprovisioned");
    let audit = env.system_rows(&format!(
        "SELECT action FROM pf_audit_log WHERE entity_id = '{LONG_NAME}' AND response_status = 200"
    ));
    let actions: BTreeSet<String> = audit.into_iter().map(|r| r[0].clone()).collect();
    assert!(
        ["tenant.provision", "tenant.refresh", "tenant.deprovision"]
            .iter()
            .all(|a| actions.contains(*a)),
        "the audit log names the user: {actions:?}"
    );
}

#[test]
fn long_username_with_tenant_key_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "longname");
    // Without a key the name does not fit PostgreSQL's 63 bytes: refused, and
    // no tenant object (PostgreSQL would truncate the names) and no registry row.
    let out = env.cmd().args(["provision", LONG_NAME]).assert().code(2);
    assert!(
        stderr_of(&out).contains("--tenant-key"),
        "{}",
        stderr_of(&out)
    );
    let tenant_objects = pg_rows(
        &mut env.pg(),
        "SELECT relname FROM pg_class WHERE relname LIKE 'pf\\_user\\_a\\_very%'",
    );
    assert!(tenant_objects.is_empty(), "{tenant_objects:?}");
    // The refusal comes before anything is created, not even the system schema.
    let registry_exists = pg_rows(
        &mut env.pg(),
        "SELECT to_regclass('pf_tenants') IS NOT NULL",
    );
    if registry_exists[0][0] == "t" {
        let registered = pg_rows(
            &mut env.pg(),
            &format!("SELECT 1 FROM pf_tenants WHERE username = '{LONG_NAME}'"),
        );
        assert!(registered.is_empty(), "no registry row for {LONG_NAME}");
    }
    long_username_with_key(&env);
}

#[test]
fn long_username_with_tenant_key_sqlite() {
    let env = Env::sqlite();
    long_username_with_key(&env);
    assert!(!sqlite_tenant_file(env.path(), "avlu").exists());
}

/// Provisioning a registered long username again, without repeating its key,
/// finds the key in the registry (every command takes the username).
#[test]
fn long_username_reprovision_without_key_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "longname_again");
    env.cmd()
        .args(["provision", LONG_NAME, "--tenant-key", "avlu"])
        .assert()
        .success();
    let out = env.cmd().args(["provision", LONG_NAME]).assert().success();
    assert!(
        stdout_of(&out).contains("already exists"),
        "{}",
        stdout_of(&out)
    );
}

/// Provisioning a registered user with a different tenant key is refused and
/// leaves the tenant as it was: still active, still refreshable.
fn wrong_tenant_key_is_refused(env: &Env) {
    env.cmd().args(["provision", "alice"]).assert().success();
    let out = env
        .cmd()
        .args(["provision", "alice", "--tenant-key", "zed"])
        .assert()
        .failure();
    assert!(stderr_of(&out).contains("zed"), "{}", stderr_of(&out));
    assert!(env.tenant_relations("zed").is_empty(), "nothing named zed");
    let registry = env.tenants(false);
    assert_eq!(registry["alice"]["tenant_key"], "alice");
    assert_eq!(
        registry["alice"]["status"], "active",
        "a refused command leaves the tenant active"
    );
    env.cmd().args(["refresh", "alice"]).assert().success();
}

#[test]
fn wrong_tenant_key_is_refused_sqlite() {
    wrong_tenant_key_is_refused(&Env::sqlite());
}

#[test]
fn wrong_tenant_key_is_refused_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    wrong_tenant_key_is_refused(&Env::postgres(&server, "wrongkey"));
}

/// A tenant key that belongs to another user is a usage error (exit 2), and the
/// message shows the key as the user typed it.
#[test]
fn key_collision_is_a_usage_error() {
    let env = Env::sqlite();
    env.cmd().args(["provision", "alice"]).assert().success();
    let out = env
        .cmd()
        .args(["provision", "dave", "--tenant-key", "alice"])
        .assert()
        .code(2);
    let err = stderr_of(&out);
    assert!(!err.contains("TenantKey"), "{err}");
    assert!(err.contains("\"alice\""), "{err}");
}

/// On a database whose time zone is not UTC, what pathfinder-db writes is still UTC: the
/// registry's and the audit log's timestamps are within a minute of UTC now.
#[test]
fn timestamps_are_utc_whatever_the_server_zone_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "timezone");
    let mut admin = env.pg();
    let db: String = admin
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET timezone = 'Pacific/Kiritimati'"
        ))
        .unwrap();
    env.ok(&["provision", "alice"]);
    let mut check = env.pg(); // a new session: the database's zone (UTC+14) applies to it
    for sql in [
        "SELECT created_at FROM pf_tenants WHERE username = 'alice'",
        "SELECT MAX(created_at) FROM pf_audit_log",
    ] {
        let off: f64 = check
            .query_one(
                &format!(
                    "SELECT abs(extract(epoch FROM (({sql}) - (now() AT TIME ZONE 'UTC'))))::float8"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert!(off < 60.0, "{sql}: {off} s away from UTC now");
    }
}
