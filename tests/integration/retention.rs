//! Retention: policies as files, sweeps that never lose a row or keep one in
//! two places, restores, and the expired-session purge. Through the built
//! binary, on SQLite and on the real PostgreSQL.

use crate::common;
use crate::common::on_both_backends;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env};
use serde_json::Value as Json;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The policies shipped in the repository.
pub(crate) fn default_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A policies directory of the test's own.
fn policies_dir(env: &Env, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path().join(format!("policies-{}", files.len()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

pub(crate) fn apply(env: &Env, dir: &Path) -> Json {
    env.json(&["policies", "apply", "--dir", dir.to_str().unwrap()])
}

/// `days` ago as a timestamp, as the application stores it.
pub(crate) fn ago(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    format!(
        "{} {:02}:{:02}:{:02}",
        date_of(t),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn date_ago(days: i64) -> String {
    date_of(time::OffsetDateTime::now_utc() - time::Duration::days(days))
}

fn date_of(t: time::OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
}

/// NULL or a quoted literal.
fn lit(v: Option<&str>) -> String {
    v.map(|s| format!("'{s}'")).unwrap_or_else(|| "NULL".into())
}

pub(crate) fn count(rows: Vec<Vec<String>>) -> i64 {
    rows[0][0].parse().expect("a count")
}

/// The columns of `table`, in order.
fn columns(env: &Env, key: Option<&str>, table: &str) -> Vec<String> {
    let sql = match env.backend {
        Backend::Sqlite => {
            format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")
        }
        Backend::Postgres(_) => format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    };
    let rows = match key {
        Some(k) => env.tenant_rows(k, &sql),
        None => env.system_rows(&sql),
    };
    rows.into_iter().map(|r| r[0].clone()).collect()
}

/// id -> the row's values as text.
fn rows_by_id(env: &Env, key: Option<&str>, sql: &str) -> BTreeMap<String, Vec<String>> {
    let rows = match key {
        Some(k) => env.tenant_rows(k, sql),
        None => env.system_rows(sql),
    };
    rows.into_iter().map(|r| (r[0].clone(), r)).collect()
}

/// Every row of a live table, by id (its columns first).
fn snapshot(env: &Env, key: Option<&str>, table: &str) -> BTreeMap<String, Vec<String>> {
    let cols = columns(env, key, table);
    rows_by_id(
        env,
        key,
        &format!("SELECT {} FROM {table} ORDER BY id", cols.join(", ")),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Live,
    Archived,
}

/// Where each of `originals` is now: exactly one of the live table and its
/// archive, with the original contents (the archive's `archived_at` aside).
/// Returns the place of each, and the archived_at of each archived row.
fn placement(
    env: &Env,
    key: Option<&str>,
    table: &str,
    originals: &BTreeMap<String, Vec<String>>,
) -> (BTreeMap<String, Place>, BTreeMap<String, String>) {
    let cols = columns(env, key, table);
    let live = snapshot(env, key, table);
    let archive = format!("{table}_archive");
    let mut archived: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let mut archived_at = BTreeMap::new();
    if !columns(env, key, &archive).is_empty() {
        let rows = match key {
            Some(k) => env.tenant_rows(
                k,
                &format!(
                    "SELECT {}, archived_at FROM {archive} ORDER BY id",
                    cols.join(", ")
                ),
            ),
            None => env.system_rows(&format!(
                "SELECT {}, archived_at FROM {archive} ORDER BY id",
                cols.join(", ")
            )),
        };
        for mut r in rows {
            let at = r.pop().unwrap();
            assert!(
                !at.is_empty(),
                "{archive}: archived_at is not set for {}",
                r[0]
            );
            archived_at.insert(r[0].clone(), at);
            archived.entry(r[0].clone()).or_default().push(r);
        }
    }
    let mut out = BTreeMap::new();
    for (id, original) in originals {
        let in_live = live.get(id);
        let copies = archived.get(id).map(Vec::len).unwrap_or(0);
        match (in_live, copies) {
            (Some(row), 0) => {
                assert_eq!(row, original, "{table} {id}: the live row changed");
                out.insert(id.clone(), Place::Live);
            }
            (None, 1) => {
                assert_eq!(
                    &archived[id][0], original,
                    "{archive} {id}: the archived row differs from the original"
                );
                out.insert(id.clone(), Place::Archived);
            }
            (live, copies) => panic!(
                "{table} {id}: in the live table: {}, copies in the archive: {copies} (must be in exactly one place)",
                live.is_some()
            ),
        }
    }
    (out, archived_at)
}

fn ids_at(places: &BTreeMap<String, Place>, place: Place) -> BTreeSet<String> {
    places
        .iter()
        .filter(|(_, p)| **p == place)
        .map(|(id, _)| id.clone())
        .collect()
}

/// A timestamp as the backends print it, to compare with the run's ISO time.
fn parse_ts(s: &str) -> time::PrimitiveDateTime {
    pathfinder_db::db::postgres::parse_timestamp(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

// ---------------------------------------------------------------------------
// Seeds: rows of known ages in every table the default policies touch.

/// What the seed of one tenant expects the default policies to do.
struct Expected {
    moved: BTreeMap<&'static str, BTreeSet<String>>,
    stays: BTreeMap<&'static str, BTreeSet<String>>,
}

/// The default policies: chat-deleted (conversations and messages, 30 days
/// after deleted_at), chat-messages (365 days after created_at),
/// career-analytics (1095 days after metric_date).
fn seed_tenant(env: &Env, key: &str, n: usize) -> Expected {
    let mut sql = String::new();
    let mut moved: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut stays: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut conv = |id: &str, created: i64, deleted: Option<i64>, goes: bool| {
        sql.push_str(&format!(
            "INSERT INTO pf_user_{key}_chat_conversations (id, title, created_at, deleted_at) VALUES ('{id}', 'About {id}', '{}', {});\n",
            ago(created),
            lit(deleted.map(ago).as_deref())
        ));
        if goes { &mut moved } else { &mut stays }
            .entry("chat_conversations")
            .or_default()
            .insert(id.to_string());
    };
    // cA: deleted long ago, all its messages too: everything goes.
    conv("ca", 700, Some(60), true);
    // cB: deleted long ago, but one message is young and not deleted: it stays.
    conv("cb", 700, Some(60), false);
    // cC: live and old: old messages go (a year), the conversation stays.
    conv("cc", 700, None, false);
    // cD: young: everything stays.
    conv("cd", 5, None, false);
    // cE: deleted recently: its year-old messages go, it stays.
    conv("ce", 400, Some(10), false);
    let mut msg = |conv: &str, i: usize, created: i64, deleted: Option<i64>, goes: bool| {
        let id = format!("{conv}-m{i}");
        sql.push_str(&format!(
            "INSERT INTO pf_user_{key}_chat_messages (id, conversation_id, role, content, tokens_used, created_at, deleted_at) \
             VALUES ('{id}', '{conv}', 'user', 'Message {i} of {conv}: it''s here', {i}, '{}', {});\n",
            ago(created),
            lit(deleted.map(ago).as_deref())
        ));
        if goes { &mut moved } else { &mut stays }
            .entry("chat_messages")
            .or_default()
            .insert(id);
    };
    for i in 0..n {
        msg("ca", i, 100, Some(60), true);
        msg("cb", i, 100, Some(60), true);
        msg("cc", i, 500, None, true);
        msg("cd", i, 5, None, false);
        msg("ce", i, 400, Some(10), true);
    }
    msg("cb", 99, 3, None, false);
    msg("cc", 99, 300, None, false);
    let mut metric = |id: &str, days: i64, goes: bool| {
        sql.push_str(&format!(
            "INSERT INTO pf_user_{key}_career_analytics (id, metric_date, metric_type, metric_value, metric_data) \
             VALUES ('{id}', '{}', 'applications', 12.5, '{{\"n\": 3}}');\n",
            date_ago(days)
        ));
        if goes { &mut moved } else { &mut stays }
            .entry("career_analytics")
            .or_default()
            .insert(id.to_string());
    };
    metric("a-old", 1200, true);
    metric("a-mid", 1000, false);
    metric("a-new", 10, false);
    // A table no default policy touches.
    sql.push_str(&format!(
        "INSERT INTO pf_user_{key}_experiences (id, title, company, start_date, created_at) VALUES ('e-old', 'Clerk', 'Acme', '2001-01-01', '{}');\n",
        ago(9000)
    ));
    stays
        .entry("experiences")
        .or_default()
        .insert("e-old".into());
    env.tenant_exec(key, &sql);
    Expected { moved, stays }
}

/// Audit rows and sessions of known ages; returns (audit ids that go,
/// audit ids that stay, session ids that go, session ids that stay).
fn seed_system(env: &Env) -> [BTreeSet<String>; 4] {
    let mut sql = String::from(
        "INSERT INTO pf_users (id, username, email, password_hash) VALUES ('u-1', 'someone', 's@example.com', 'x');\n",
    );
    let mut out: [BTreeSet<String>; 4] = Default::default();
    for (i, days) in [500, 450, 401 + 30].iter().enumerate() {
        let id = format!("audit-old-{i}");
        sql.push_str(&format!(
            "INSERT INTO pf_audit_log (id, action, entity_type, entity_id, created_at) VALUES ('{id}', 'user.login', 'user', 'someone', '{}');\n",
            ago(*days)
        ));
        out[0].insert(id);
    }
    for (i, days) in [300, 10].iter().enumerate() {
        let id = format!("audit-new-{i}");
        sql.push_str(&format!(
            "INSERT INTO pf_audit_log (id, action, entity_type, entity_id, created_at) VALUES ('{id}', 'user.login', 'user', 'someone', '{}');\n",
            ago(*days)
        ));
        out[1].insert(id);
    }
    for (id, days, goes) in [
        ("sess-expired-long", 10, true),
        ("sess-expired-2d", 2, true),
        ("sess-live", -3, false),
    ] {
        sql.push_str(&format!(
            "INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) VALUES ('{id}', 'u-1', 'token-{id}', '{}');\n",
            ago(days)
        ));
        out[if goes { 2 } else { 3 }].insert(id.into());
    }
    env.system_exec(&sql);
    out
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:02}")).collect()
}

const SWEPT: [&str; 4] = [
    "chat_conversations",
    "chat_messages",
    "career_analytics",
    "experiences",
];

fn table_snapshot(env: &Env, key: &str) -> BTreeMap<&'static str, BTreeMap<String, Vec<String>>> {
    SWEPT
        .iter()
        .map(|t| (*t, snapshot(env, Some(key), &format!("pf_user_{key}_{t}"))))
        .collect()
}

/// Everything in the tenant tables and their archives, for "nothing changed".
fn everything(env: &Env, tenants: &[String]) -> Vec<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for key in tenants {
        for t in SWEPT {
            let table = format!("pf_user_{key}_{t}");
            out.push(env.tenant_rows(key, &format!("SELECT * FROM {table} ORDER BY id")));
            if !columns(env, Some(key), &format!("{table}_archive")).is_empty() {
                out.push(
                    env.tenant_rows(key, &format!("SELECT * FROM {table}_archive ORDER BY id")),
                );
            }
        }
    }
    for t in ["pf_user_sessions", "pf_audit_log_archive"] {
        out.push(env.system_rows(&format!("SELECT * FROM {t} ORDER BY id")));
    }
    out.push(env.system_rows(
        "SELECT id FROM pf_audit_log WHERE action NOT LIKE 'retention%' AND action NOT LIKE 'policy%' ORDER BY id",
    ));
    out
}

/// Rows per (tenant or "(system)", table, policy) of a run's JSON.
fn counts(report: &Json) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    let mut add = |who: String, tables: &Json| {
        for t in tables.as_array().into_iter().flatten() {
            out.insert(
                (
                    who.clone(),
                    t["table"].as_str().unwrap().to_string(),
                    t["policy"].as_str().unwrap().to_string(),
                ),
                t["rows"].as_u64().unwrap(),
            );
        }
    };
    for t in report["tenants"].as_array().unwrap() {
        add(t["username"].as_str().unwrap().to_string(), &t["tables"]);
    }
    add("(system)".into(), &report["system_tables"]);
    out
}

// ---------------------------------------------------------------------------
// 1. The default policies on 20 tenants: the dry run changes nothing and
//    counts what the run then moves; the run moves exactly the due rows,
//    row for row, into archives that hold the originals with archived_at;
//    a second run moves nothing; audit rows and last_run.

fn default_policies_move_the_right_rows(env: &Env) {
    let tenants = keys(20);
    let mut args = vec!["provision", "--jobs", "4"];
    args.extend(tenants.iter().map(String::as_str));
    env.ok(&args);
    let applied = apply(env, &default_policies());
    assert_eq!(applied["changes"].as_array().unwrap().len(), 5, "{applied}");

    let mut expected = BTreeMap::new();
    let mut originals = BTreeMap::new();
    for (i, key) in tenants.iter().enumerate() {
        expected.insert(key.clone(), seed_tenant(env, key, 1 + i % 3));
        originals.insert(key.clone(), table_snapshot(env, key));
    }
    let [audit_go, audit_stay, sess_go, sess_stay] = seed_system(env);
    let audit_originals = snapshot(env, None, "pf_audit_log");
    let sessions_before = snapshot(env, None, "pf_user_sessions");

    // The dry run changes nothing, and says what will move.
    let before = everything(env, &tenants);
    let dry = env.json(&["retention", "run", "--all", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        everything(env, &tenants),
        before,
        "the dry run changed something"
    );
    let dry_counts = counts(&dry);

    // The real run, in small batches on four workers.
    let run = env.json(&[
        "retention",
        "run",
        "--all",
        "--jobs",
        "4",
        "--batch-size",
        "2",
    ]);
    assert_eq!(run["complete"], true, "{run}");
    assert_eq!(run["failed"], serde_json::json!([]));
    assert_eq!(
        counts(&run),
        dry_counts,
        "the dry run counted what the run moved"
    );
    let started = parse_ts(run["started_at"].as_str().unwrap());

    for key in &tenants {
        let want = &expected[key];
        for t in SWEPT {
            let table = format!("pf_user_{key}_{t}");
            let (places, archived_at) = placement(env, Some(key), &table, &originals[key][t]);
            let moved = ids_at(&places, Place::Archived);
            assert_eq!(
                moved,
                want.moved.get(t).cloned().unwrap_or_default(),
                "{table}: moved rows"
            );
            assert_eq!(
                ids_at(&places, Place::Live),
                want.stays.get(t).cloned().unwrap_or_default(),
                "{table}: rows that stay"
            );
            for at in archived_at.values() {
                assert_eq!(
                    parse_ts(at),
                    started,
                    "{table}: archived_at is the run's start"
                );
            }
        }
    }
    let (places, _) = placement(env, None, "pf_audit_log", &audit_originals);
    assert_eq!(ids_at(&places, Place::Archived), audit_go);
    assert!(audit_stay.is_subset(&ids_at(&places, Place::Live)));
    let sessions = snapshot(env, None, "pf_user_sessions");
    assert_eq!(sessions.keys().cloned().collect::<BTreeSet<_>>(), sess_stay);
    assert!(sess_go.iter().all(|s| sessions_before.contains_key(s)));
    assert_eq!(
        count(env.system_rows("SELECT COUNT(*) FROM pf_audit_log_archive WHERE id LIKE 'sess%'")),
        0,
        "sessions are never archived"
    );

    // One audit row per committed batch of each tenant and table that
    // changed, with the batch's counts: per table they add up.
    let audit = env.system_rows(
        "SELECT entity_id, details, response_status FROM pf_audit_log WHERE action = 'retention.sweep' ORDER BY entity_id",
    );
    let moved_tables: usize = expected
        .values()
        .map(|e| e.moved.keys().count())
        .sum::<usize>()
        + 2;
    let mut deleted: BTreeMap<(Option<String>, String), u64> = BTreeMap::new();
    for row in &audit {
        assert_eq!(row[2], "200");
        let details: Json = serde_json::from_str(&row[1]).unwrap();
        let key = details["tenant_key"].as_str().map(str::to_string);
        let table = details["table"].as_str().unwrap().to_string();
        assert_eq!(row[0], table);
        if table != "pf_user_sessions" {
            assert_eq!(details["archived"], details["deleted"], "moves: {details}");
        }
        *deleted.entry((key, table)).or_default() += details["deleted"].as_u64().unwrap();
    }
    assert_eq!(deleted.len(), moved_tables, "{audit:?}");
    for ((key, table), n) in deleted {
        let want = match key.as_deref() {
            Some(key) => {
                let short = table.trim_start_matches(&format!("pf_user_{key}_"));
                expected[key].moved[short].len() as u64
            }
            None if table == "pf_audit_log" => audit_go.len() as u64,
            None => sess_go.len() as u64,
        };
        assert_eq!(n, want, "{table}");
    }
    // Every policy completed: last_run is the run's start.
    let last_runs =
        env.system_rows("SELECT name, last_run FROM pf_data_retention_policies ORDER BY name");
    assert_eq!(last_runs.len(), 5);
    for r in &last_runs {
        assert_eq!(parse_ts(&r[1]), started, "{r:?}");
    }

    // A second run finds nothing to do, and writes no sweep row.
    let again = env.json(&["retention", "run", "--all"]);
    assert_eq!(again["totals"]["rows"], 0, "{again}");
    assert_eq!(
        count(
            env.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action = 'retention.sweep'")
        ),
        audit.len() as i64
    );
    // `policies list` shows last_run and what each pattern resolves to.
    let list = env.json(&["policies", "list"]);
    let chat = list["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "chat-deleted")
        .unwrap()
        .clone();
    assert_eq!(
        chat["resolves_to"],
        serde_json::json!(["pf_user_*_chat_conversations", "pf_user_*_chat_messages"])
    );
    assert!(chat["last_run"].as_str().unwrap().ends_with('Z'), "{chat}");
}
on_both_backends!(
    default_policies_move_the_right_rows,
    default_policies_move_the_right_rows_sqlite,
    default_policies_move_the_right_rows_postgres,
    "retdefault"
);

// ---------------------------------------------------------------------------
// 2. Parents and children: an old experience with a young skill and a PERT
//    response; an old conversation with young messages.

const FK_POLICIES: &[(&str, &str)] = &[
    (
        "experiences.toml",
        "tables = [\"pf_user_*_experiences\"]\nretention_days = 1000\n",
    ),
    (
        "skills.toml",
        "tables = [\"skills\"]\nretention_days = 1000\n",
    ),
    (
        "pert.toml",
        "tables = [\"pf_user_*_pert_responses\"]\nretention_days = 1000\n",
    ),
    (
        "chat-deleted.toml",
        "tables = [\"pf_user_*_chat_conversations\", \"pf_user_*_chat_messages\"]\nage_column = \"deleted_at\"\nretention_days = 30\n",
    ),
];

fn parents_wait_for_their_children(env: &Env) {
    env.ok(&["provision", "fk"]);
    apply(env, &policies_dir(env, FK_POLICIES));
    let (old, young) = (ago(2000), ago(3));
    let exp = |id: &str| {
        format!(
            "INSERT INTO pf_user_fk_experiences (id, title, company, start_date, created_at) VALUES ('{id}', 'Dev', 'Acme', '2010-01-01', '{old}');\n"
        )
    };
    let skill = |id: &str, e: &str, at: &str| {
        format!(
            "INSERT INTO pf_user_fk_skills (id, experience_id, skill_name, created_at) VALUES ('{id}', '{e}', 'Rust', '{at}');\n"
        )
    };
    let pert = |id: &str, e: &str, at: &str| {
        format!(
            "INSERT INTO pf_user_fk_pert_responses (id, experience_id, competency_id, situation, task, action, result, created_at) \
             VALUES ('{id}', '{e}', 'c1', 's', 't', 'a', 'r', '{at}');\n"
        )
    };
    let mut sql = String::new();
    // e1: old, with a young skill and an old PERT response: the response
    // goes, the skill and the experience stay.
    sql += &exp("e1");
    sql += &skill("s1", "e1", &young);
    sql += &pert("p1", "e1", &old);
    // e2: old, its skill and response old too: all three go.
    sql += &exp("e2");
    sql += &skill("s2", "e2", &old);
    sql += &pert("p2", "e2", &old);
    // e3: old, with a young PERT response (no cascade): it stays, no error.
    sql += &exp("e3");
    sql += &pert("p3", "e3", &young);
    // e4: old and alone: it goes.
    sql += &exp("e4");
    // c1: deleted long ago, a young message not deleted: it stays.
    // c2: deleted long ago, its messages too: all go.
    let deleted = ago(100);
    sql += &format!(
        "INSERT INTO pf_user_fk_chat_conversations (id, title, deleted_at) VALUES ('c1', 'x', '{deleted}'), ('c2', 'y', '{deleted}');\n\
         INSERT INTO pf_user_fk_chat_messages (id, conversation_id, role, content, created_at, deleted_at) VALUES \
         ('m1', 'c1', 'user', 'old', '{old}', '{deleted}'), ('m2', 'c1', 'user', 'young', '{young}', NULL), \
         ('m3', 'c2', 'user', 'a', '{old}', '{deleted}'), ('m4', 'c2', 'assistant', 'b', '{old}', '{deleted}');\n"
    );
    env.tenant_exec("fk", &sql);
    let tables = [
        "experiences",
        "skills",
        "pert_responses",
        "chat_conversations",
        "chat_messages",
    ];
    let originals: BTreeMap<&str, _> = tables
        .iter()
        .map(|t| (*t, snapshot(env, Some("fk"), &format!("pf_user_fk_{t}"))))
        .collect();
    let dry = env.json(&["retention", "run", "fk", "--dry-run"]);
    let run = env.json(&["retention", "run", "fk", "--batch-size", "1"]);
    assert_eq!(run["failed"], serde_json::json!([]), "{run}");
    assert_eq!(counts(&run), counts(&dry), "dry run and run agree");
    let moved = |t: &str| {
        let (places, _) = placement(env, Some("fk"), &format!("pf_user_fk_{t}"), &originals[t]);
        ids_at(&places, Place::Archived)
    };
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(moved("experiences"), set(&["e2", "e4"]));
    assert_eq!(moved("skills"), set(&["s2"]));
    assert_eq!(moved("pert_responses"), set(&["p1", "p2"]));
    assert_eq!(moved("chat_conversations"), set(&["c2"]));
    assert_eq!(moved("chat_messages"), set(&["m1", "m3", "m4"]));
    // No run named a user: last_run is left alone.
    assert_eq!(
        count(env.system_rows(
            "SELECT COUNT(*) FROM pf_data_retention_policies WHERE last_run IS NOT NULL"
        )),
        0
    );

    // Once the skill ages out, it goes, and its experience after it.
    env.tenant_exec(
        "fk",
        &format!("UPDATE pf_user_fk_skills SET created_at = '{old}' WHERE id = 's1'"),
    );
    let mut originals = originals;
    let s1 = snapshot(env, Some("fk"), "pf_user_fk_skills")["s1"].clone();
    originals.get_mut("skills").unwrap().insert("s1".into(), s1);
    let moved = |t: &str| {
        let (places, _) = placement(env, Some("fk"), &format!("pf_user_fk_{t}"), &originals[t]);
        ids_at(&places, Place::Archived)
    };
    let run = env.json(&["retention", "run", "fk"]);
    assert_eq!(run["failed"], serde_json::json!([]), "{run}");
    assert_eq!(moved("skills"), set(&["s1", "s2"]));
    assert_eq!(moved("experiences"), set(&["e1", "e2", "e4"]));
}
on_both_backends!(
    parents_wait_for_their_children,
    parents_wait_for_their_children_sqlite,
    parents_wait_for_their_children_postgres,
    "retfk"
);

// ---------------------------------------------------------------------------
// 3. Killed with SIGKILL at random moments and run again each time: every
//    original row ends in exactly one place, with its contents.

/// A small random number generator (no dependency): xorshift, seeded by time.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(seed | 1)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` old messages of one conversation, ids `<tag>-<i>`.
pub(crate) fn old_messages(env: &Env, key: &str, tag: &str, n: usize) {
    let created = ago(800);
    let sql = match env.backend {
        Backend::Sqlite => format!(
            "INSERT INTO pf_user_{key}_chat_conversations (id, title) VALUES ('{tag}', 'bulk');\n\
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO pf_user_{key}_chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             SELECT '{tag}-' || i, '{tag}', 'user', 'bulk message ' || i, i, '{created}' FROM n;"
        ),
        Backend::Postgres(_) => format!(
            "INSERT INTO pf_user_{key}_chat_conversations (id, title) VALUES ('{tag}', 'bulk');\n\
             INSERT INTO pf_user_{key}_chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             SELECT '{tag}-' || i, '{tag}', 'user', 'bulk message ' || i, i, TIMESTAMP '{created}' FROM generate_series(1, {n}) AS i;"
        ),
    };
    env.tenant_exec(key, &sql);
}

fn old_audit_rows(env: &Env, tag: &str, n: usize) {
    let mut sql = String::new();
    for i in 0..n {
        sql.push_str(&format!(
            "INSERT INTO pf_audit_log (id, action, entity_type, entity_id, created_at) VALUES ('{tag}-{i}', 'user.login', 'user', 'u{i}', '{}');\n",
            ago(600)
        ));
    }
    env.system_exec(&sql);
}

/// Messages in the tenants' archives (0 before the first sweep created them).
fn archived_messages(env: &Env, tenants: &[String]) -> i64 {
    tenants
        .iter()
        .map(|key| {
            let table = format!("pf_user_{key}_chat_messages_archive");
            if columns(env, Some(key), &table).is_empty() {
                0
            } else {
                count(env.tenant_rows(key, &format!("SELECT COUNT(*) FROM {table}")))
            }
        })
        .sum()
}

fn sigkill_at_random_moments_loses_nothing(env: &Env) {
    let tenants = keys(3);
    let mut args = vec!["provision"];
    args.extend(tenants.iter().map(String::as_str));
    env.ok(&args);
    apply(env, &default_policies());
    let stop_file = env.path().join("never.stop");
    let mut round = 0;
    // Messages per tenant and round: enough one-row batches that a run is
    // still at work when the kill comes, on a quiet machine too.
    const PER_ROUND: usize = 240;
    let seed = |env: &Env, round: usize| {
        for key in &tenants {
            old_messages(env, key, &format!("r{round}"), PER_ROUND);
        }
        old_audit_rows(env, &format!("r{round}"), 30);
    };
    seed(env, round);
    let mut rng = Rng::new();
    let (mut kills, mut finished) = (0, 0);
    // A kill before the first batch commits (while the process starts) moves nothing: each
    // such kill lets the next run live longer, so that kills also land in sweeps at work
    // however fast the machine and the build are.
    let mut idle_kills = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while kills < 10 {
        assert!(Instant::now() < deadline, "only {kills} kills in 40 s");
        let mut child = env
            .std_cmd()
            .args([
                "retention",
                "run",
                "--all",
                "--jobs",
                "2",
                "--batch-size",
                "1",
                "--quiet",
            ])
            .arg("--stop-file")
            .arg(&stop_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start retention run");
        let archived_before = archived_messages(env, &tenants);
        // Runs that finished first make the next kills come sooner.
        std::thread::sleep(Duration::from_millis(
            20 + 100 * idle_kills + rng.below((200 >> finished.min(4)).max(10)),
        ));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            if archived_messages(env, &tenants) == archived_before {
                idle_kills += 1;
            }
        } else {
            // It finished first: give the next run more to do.
            finished += 1;
            round += 1;
            seed(env, round);
        }
    }
    // The kills hit sweeps at work: some rows had moved before the last run.
    let moved_before = archived_messages(env, &tenants);
    assert!(moved_before > 0, "no kill landed in a sweep at work");
    // Run again until it is done.
    let done = env.json(&["retention", "run", "--all", "--batch-size", "50"]);
    assert_eq!(done["complete"], true, "{done}");
    for key in &tenants {
        let table = format!("pf_user_{key}_chat_messages");
        let mut originals = BTreeMap::new();
        for r in 0..=round {
            for i in 1..=PER_ROUND {
                originals.insert(format!("r{r}-{i}"), ());
            }
        }
        // The originals, rebuilt from what they were seeded as.
        let cols = columns(env, Some(key), &table);
        let expected: BTreeMap<String, Vec<String>> = originals
            .keys()
            .map(|id| {
                let (tag, i) = id.split_once('-').unwrap();
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| match c.as_str() {
                        "id" => id.clone(),
                        "conversation_id" => tag.to_string(),
                        "role" => "user".into(),
                        "content" => format!("bulk message {i}"),
                        "tokens_used" => i.to_string(),
                        _ => String::new(),
                    })
                    .collect();
                (id.clone(), row)
            })
            .collect();
        let (places, _) = placement_by(env, key, &table, &expected, &["created_at"]);
        assert!(
            places.values().all(|p| *p == Place::Archived),
            "{table}: every old message moved"
        );
    }
    let audit_ids: Vec<String> = (0..=round)
        .flat_map(|r| (0..30).map(move |i| format!("r{r}-{i}")))
        .collect();
    let live = count(env.system_rows(&format!(
        "SELECT COUNT(*) FROM pf_audit_log WHERE id IN ({})",
        audit_ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ")
    )));
    let archived = env.system_rows(&format!(
        "SELECT id, COUNT(*) FROM pf_audit_log_archive WHERE id IN ({}) GROUP BY id",
        audit_ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    assert_eq!(live, 0);
    assert_eq!(archived.len(), audit_ids.len(), "every audit row archived");
    assert!(archived.iter().all(|r| r[1] == "1"), "once each");
    eprintln!(
        "{kills} kills, {finished} runs finished before their kill, {moved_before} messages moved before the last run"
    );
}
on_both_backends!(
    sigkill_at_random_moments_loses_nothing,
    sigkill_at_random_moments_loses_nothing_sqlite,
    sigkill_at_random_moments_loses_nothing_postgres,
    "retkill"
);

/// Like [`placement`] for rows whose `skip` columns the test does not know
/// exactly (a timestamp written by the database): compared without them.
fn placement_by(
    env: &Env,
    key: &str,
    table: &str,
    expected: &BTreeMap<String, Vec<String>>,
    skip: &[&str],
) -> (BTreeMap<String, Place>, ()) {
    let cols = columns(env, Some(key), table);
    let keep: Vec<usize> = (0..cols.len())
        .filter(|i| !skip.contains(&cols[*i].as_str()))
        .collect();
    let project = |m: BTreeMap<String, Vec<String>>| -> BTreeMap<String, Vec<String>> {
        m.into_iter()
            .map(|(id, r)| (id, keep.iter().map(|i| r[*i].clone()).collect()))
            .collect()
    };
    let live = project(snapshot(env, Some(key), table));
    let archive = project(rows_by_id(
        env,
        Some(key),
        &format!(
            "SELECT {} FROM {table}_archive ORDER BY id",
            cols.join(", ")
        ),
    ));
    let copies = count(env.tenant_rows(key, &format!("SELECT COUNT(*) FROM {table}_archive")));
    let archived_ids = count(env.tenant_rows(
        key,
        &format!("SELECT COUNT(DISTINCT id) FROM {table}_archive"),
    ));
    assert_eq!(copies, archived_ids, "{table}: a row archived twice");
    let expected = project(expected.clone());
    let mut out = BTreeMap::new();
    for (id, want) in &expected {
        match (live.get(id), archive.get(id)) {
            (Some(row), None) => {
                assert_eq!(row, want, "{table} {id}");
                out.insert(id.clone(), Place::Live);
            }
            (None, Some(row)) => {
                assert_eq!(row, want, "{table} {id}: archived contents");
                out.insert(id.clone(), Place::Archived);
            }
            (l, a) => panic!(
                "{table} {id}: live {}, archived {}: must be in exactly one place",
                l.is_some(),
                a.is_some()
            ),
        }
    }
    (out, ())
}

// ---------------------------------------------------------------------------
// 4. --max-runtime and the stop file end the run between batches; a re-run
//    finishes.

fn max_runtime_stops_between_batches(env: &Env) {
    env.ok(&["provision", "big"]);
    let dir = policies_dir(
        env,
        &[(
            "msgs.toml",
            "tables = [\"chat_messages\"]\nretention_days = 365\n",
        )],
    );
    apply(env, &dir);
    // Enough 2-row batches that no machine finishes them in 700 ms (a
    // quiet one did 2,000 in less).
    let total = 40_000;
    old_messages(env, "big", "b", total);
    let stop_file = env.path().join("retention.stop");

    // The stop file is there: the run does not start.
    std::fs::write(&stop_file, "").unwrap();
    let out = env
        .cmd()
        .args(["--json", "retention", "run", "--all", "--stop-file"])
        .arg(&stop_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["stopped"], "stop_file", "{report}");
    assert_eq!(report["totals"]["rows"], 0);
    assert_eq!(report["left"]["tenants_not_started"], 1);
    // Another user's stop file (the default place is the shared temporary
    // folder) stops nothing, and says so.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&stop_file, Some(65534), Some(65534)).unwrap();
        let out = env
            .cmd()
            .args([
                "--json",
                "retention",
                "run",
                "--all",
                "--dry-run",
                "--stop-file",
            ])
            .arg(&stop_file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("ignored"), "{}", stderr(&out));
        let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(report["stopped"].is_null(), "{report}");
    }
    std::fs::remove_file(&stop_file).unwrap();

    // Small batches, stopped after 700 ms.
    let batch = 2;
    let started = Instant::now();
    let out = env
        .cmd()
        .args([
            "--json",
            "retention",
            "run",
            "--all",
            "--batch-size",
            &batch.to_string(),
        ])
        .args(["--max-runtime", "700ms", "--stop-file"])
        .arg(&stop_file)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["stopped"], "max_runtime", "{report}");
    assert_eq!(report["complete"], false);
    let moved = report["totals"]["rows"].as_u64().unwrap();
    assert!(
        moved > 0 && moved < total as u64,
        "moved {moved} in {took:?}"
    );
    assert_eq!(moved % batch, 0, "whole batches only");
    let stopped_in = &report["left"]["stopped_in"][0];
    assert_eq!(stopped_in["table"], "pf_user_big_chat_messages", "{report}");
    assert_eq!(
        stopped_in["rows_left"].as_u64().unwrap(),
        total as u64 - moved
    );
    let live = count(env.tenant_rows("big", "SELECT COUNT(*) FROM pf_user_big_chat_messages"));
    let archived = count(env.tenant_rows(
        "big",
        "SELECT COUNT(*) FROM pf_user_big_chat_messages_archive",
    ));
    assert_eq!((live + archived) as usize, total, "every row in one place");
    assert_eq!(archived as u64, moved);
    // Not completed: last_run stays empty.
    assert_eq!(
        count(env.system_rows(
            "SELECT COUNT(*) FROM pf_data_retention_policies WHERE last_run IS NOT NULL"
        )),
        0
    );
    // The human summary says what is left.
    std::fs::write(&stop_file, "").unwrap();
    let out = env
        .cmd()
        .args(["retention", "run", "big", "--stop-file"])
        .arg(&stop_file)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("run again to finish"),
        "{}",
        stdout(&out)
    );
    std::fs::remove_file(&stop_file).unwrap();

    // A re-run finishes.
    let done = env.json(&["retention", "run", "--all", "--batch-size", "500"]);
    assert_eq!(done["complete"], true);
    assert_eq!(
        done["totals"]["rows"].as_u64().unwrap(),
        total as u64 - moved
    );
    assert_eq!(
        count(env.tenant_rows("big", "SELECT COUNT(*) FROM pf_user_big_chat_messages")),
        0
    );
    assert_eq!(
        count(env.tenant_rows(
            "big",
            "SELECT COUNT(DISTINCT id) FROM pf_user_big_chat_messages_archive"
        )),
        total as i64
    );
}
on_both_backends!(
    max_runtime_stops_between_batches,
    max_runtime_stops_between_batches_sqlite,
    max_runtime_stops_between_batches_postgres,
    "retstop"
);

// ---------------------------------------------------------------------------
// 5. Invalid policies are refused at apply, exit 2, naming the file and the
//    field, and nothing is written.

fn invalid_policies_are_refused(env: &Env) {
    env.ok(&["init"]);
    apply(env, &default_policies());
    let before = env.system_rows("SELECT * FROM pf_data_retention_policies ORDER BY name");
    let good = (
        "good.toml",
        "tables = [\"chat_messages\"]\nretention_days = 10\n",
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown-table.toml",
            "tables = [\"pf_user_*_chats\"]\nretention_days = 10\n",
            "tables",
        ),
        (
            "unknown-column.toml",
            "tables = [\"pf_user_*_career_analytics\"]\nretention_days = 10\nage_column = \"deleted_at\"\n",
            "age_column",
        ),
        (
            "zero.toml",
            "tables = [\"pf_audit_log\"]\nretention_days = 0\n",
            "retention_days",
        ),
        (
            "negative.toml",
            "tables = [\"pf_audit_log\"]\nretention_days = -30\n",
            "retention_days",
        ),
        (
            "registry.toml",
            "tables = [\"pf_tenants\"]\nretention_days = 10\n",
            "tables",
        ),
        (
            "history.toml",
            "tables = [\"pf_user_*_schema_history\"]\nretention_days = 10\n",
            "tables",
        ),
        (
            "wide.toml",
            "tables = [\"pf_*\"]\nretention_days = 10\n",
            "tables",
        ),
        (
            "archives.toml",
            "tables = [\"pf_user_*_chat_*\"]\nretention_days = 10\n",
            "tables",
        ),
        (
            "nothing.toml",
            "tables = [\"chat_messages\"]\nretention_days = 10\narchive = false\ndelete = false\n",
            "archive",
        ),
        (
            "credentials.toml",
            "tables = [\"pf_user_sessions\"]\nage_column = \"expires_at\"\nretention_days = 1\n",
            "archive",
        ),
        (
            "typo.toml",
            "tables = [\"chat_messages\"]\nretention_dais = 10\n",
            "retention_dais",
        ),
        (
            "syntax.toml",
            "tables = [\"chat_messages\"\nretention_days = 10\n",
            "",
        ),
    ];
    for (file, text, field) in cases {
        let dir = policies_dir(env, &[good, (file, text)]);
        let out = env.run(&["policies", "apply", "--dir", dir.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(file), "{file}: {err}");
        if !field.is_empty() {
            assert!(err.contains(&format!("field `{field}`")), "{file}: {err}");
        } else {
            // A syntax error says where and what the parser expected.
            assert!(err.contains("line ") && err.contains("expected"), "{err}");
            assert!(!err.contains("not shown"), "{err}");
        }
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(
            env.system_rows("SELECT * FROM pf_data_retention_policies ORDER BY name"),
            before,
            "{file}: nothing is written"
        );
    }
    // Two policies with the same tables.
    let dir = policies_dir(
        env,
        &[
            (
                "one.toml",
                "tables = [\"chat_messages\"]\nretention_days = 10\n",
            ),
            (
                "two.toml",
                "tables = [\"chat_messages\"]\nretention_days = 20\nage_column = \"deleted_at\"\n",
            ),
        ],
    );
    let out = env.run(&["policies", "apply", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("two.toml") && stderr(&out).contains("one.toml"));

    // apply shows the difference: a change, a removal; --dry-run writes nothing.
    let dir = policies_dir(
        env,
        &[
            (
                "audit-log.toml",
                "tables = [\"pf_audit_log\"]\nretention_days = 800\n",
            ),
            (
                "sessions.toml",
                "tables = [\"pf_user_sessions\"]\nage_column = \"expires_at\"\nretention_days = 1\narchive = false\n",
            ),
        ],
    );
    let dry = env.json(&[
        "policies",
        "apply",
        "--dry-run",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let kinds: Vec<(String, String)> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["name"]
                    .as_str()
                    .or(c["policy"]["name"].as_str())
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("update".into(), "audit-log".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("remove".into(), "chat-messages".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("update".into(), "sessions".into())),
        "description changed: {kinds:?}"
    );
    // Where a file was read from is no change of its policy.
    for c in dry["changes"].as_array().unwrap() {
        assert!(c["fields"].get("source").is_none(), "{c}");
    }
    assert_eq!(
        env.system_rows("SELECT * FROM pf_data_retention_policies ORDER BY name"),
        before,
        "the dry run wrote nothing"
    );
    let out = env.ok(&["policies", "apply", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.contains("~ audit-log: ") && out.contains("retention_days 400 -> 800"),
        "{out}"
    );
    assert!(out.contains("- chat-messages"), "{out}");
    assert_eq!(
        env.system_rows(
            "SELECT name, retention_days FROM pf_data_retention_policies ORDER BY name"
        ),
        vec![
            vec!["audit-log".to_string(), "800".into()],
            vec!["sessions".to_string(), "1".into()]
        ]
    );
    assert_eq!(
        count(env.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action LIKE 'policy.%'")),
        5 + 5,
        "one audit row per change"
    );
    // A folder with no policy file (a wrong --dir) removes nothing unless asked.
    let empty = policies_dir(env, &[]);
    let out = env.run(&["policies", "apply", "--dir", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-empty"), "{}", stderr(&out));
    let kept = env.system_rows("SELECT name FROM pf_data_retention_policies ORDER BY name");
    assert_eq!(kept.len(), 2);
    env.ok(&[
        "policies",
        "apply",
        "--allow-empty",
        "--dir",
        empty.to_str().unwrap(),
    ]);
    assert!(
        env.system_rows("SELECT name FROM pf_data_retention_policies")
            .is_empty()
    );
}
on_both_backends!(
    invalid_policies_are_refused,
    invalid_policies_are_refused_sqlite,
    invalid_policies_are_refused_postgres,
    "retinvalid"
);

// ---------------------------------------------------------------------------
// 6. Restore: parents first, rows live again refused, the same one-place
//    guarantee.

fn restore_brings_rows_back(env: &Env) {
    env.ok(&["provision", "rs"]);
    apply(env, &policies_dir(env, FK_POLICIES));
    let old = ago(2000);
    env.tenant_exec(
        "rs",
        &format!(
            "INSERT INTO pf_user_rs_experiences (id, title, company, start_date, created_at) VALUES ('e1', 'Dev', 'Acme', '2010-01-01', '{old}'), ('e2', 'Ops', 'Beta', '2012-01-01', '{old}');\n\
             INSERT INTO pf_user_rs_skills (id, experience_id, skill_name, years_of_experience, created_at) VALUES ('s1', 'e1', 'Rust', 2.5, '{old}'), ('s2', 'e2', 'SQL', 4, '{old}');\n"
        ),
    );
    let originals: BTreeMap<&str, _> = ["experiences", "skills"]
        .iter()
        .map(|t| (*t, snapshot(env, Some("rs"), &format!("pf_user_rs_{t}"))))
        .collect();
    let run = env.json(&["retention", "run", "rs"]);
    assert_eq!(run["totals"]["rows"], 4, "{run}");
    let archived_at =
        env.tenant_rows("rs", "SELECT archived_at FROM pf_user_rs_skills_archive")[0][0].clone();

    // Skills whose experience is archived: refused, nothing changes.
    let out = env.run(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "skills",
        "--ids",
        "s1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--table experiences"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        count(env.tenant_rows("rs", "SELECT COUNT(*) FROM pf_user_rs_skills")),
        0
    );

    // An id that is not archived is a usage error.
    let out = env.run(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "skills",
        "--ids",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A time that is none is refused; an age counts back from now, as
    // `audit --since` does.
    let out = env.run(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "skills",
        "--archived-since",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a time"), "{}", stderr(&out));
    // (The skills archived within the day are selected, and refused as
    // above: their experiences are archived.)
    let out = env.run(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "skills",
        "--archived-since",
        "1d",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--table experiences"),
        "{}",
        stderr(&out)
    );
    // Parents and children together, parents first whatever the order given.
    let out = env.ok(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "skills,experiences",
        "--archived-since",
        &archived_at,
    ]);
    assert!(
        out.contains("restored 2 row(s) into pf_user_rs_experiences"),
        "{out}"
    );
    for t in ["experiences", "skills"] {
        let (places, _) = placement(env, Some("rs"), &format!("pf_user_rs_{t}"), &originals[t]);
        assert!(
            places.values().all(|p| *p == Place::Live),
            "{t}: {places:?}"
        );
    }
    assert_eq!(
        count(
            env.system_rows("SELECT COUNT(*) FROM pf_audit_log WHERE action = 'retention.restore'")
        ),
        2
    );

    // Archived again; then the application creates a row with an archived
    // id: restoring it is refused, the others are not touched.
    env.json(&["retention", "run", "rs"]);
    env.tenant_exec(
        "rs",
        "INSERT INTO pf_user_rs_experiences (id, title, company, start_date) VALUES ('e2', 'New', 'Gamma', '2020-01-01')",
    );
    let out = env.run(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "experiences",
        "--ids",
        "e1,e2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("live again") && stderr(&out).contains("e2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        count(env.tenant_rows("rs", "SELECT COUNT(*) FROM pf_user_rs_experiences_archive")),
        2
    );
    // e1 alone is fine, by id.
    env.ok(&[
        "retention",
        "restore",
        "rs",
        "--table",
        "experiences",
        "--ids",
        "e1",
    ]);
    let (places, _) = placement(env, Some("rs"), "pf_user_rs_experiences", &{
        let mut m = originals["experiences"].clone();
        m.remove("e2");
        m
    });
    assert_eq!(places["e1"], Place::Live);
}
on_both_backends!(
    restore_brings_rows_back,
    restore_brings_rows_back_sqlite,
    restore_brings_rows_back_postgres,
    "retrestore"
);

// ---------------------------------------------------------------------------
// 7. sessions purge; an archive whose columns no longer match is refused; one
//    tenant failing does not stop the others.

fn sessions_purge_and_failures(env: &Env) {
    env.ok(&["provision", "ok1", "bad", "ok2"]);
    apply(env, &default_policies());
    env.system_exec(&format!(
        "INSERT INTO pf_users (id, username, email, password_hash) VALUES ('u-1', 'someone', 's@example.com', 'x');\n\
         INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) VALUES \
         ('gone-1', 'u-1', 't1', '{}'), ('gone-2', 'u-1', 't2', '{}'), ('live', 'u-1', 't3', '{}');",
        ago(3),
        ago(0),
        ago(-2)
    ));
    let dry = env.json(&["sessions", "purge", "--dry-run"]);
    assert_eq!(dry["deleted"], 2, "{dry}");
    assert_eq!(
        count(env.system_rows("SELECT COUNT(*) FROM pf_user_sessions")),
        3
    );
    let purge = env.json(&["sessions", "purge", "--batch-size", "1"]);
    assert_eq!(purge["deleted"], 2, "{purge}");
    assert_eq!(purge["batches"], 2);
    assert_eq!(
        env.system_rows("SELECT id FROM pf_user_sessions"),
        vec![vec!["live".to_string()]]
    );
    // One audit row per batch, each with its own count.
    let audit = env.system_rows("SELECT details FROM pf_audit_log WHERE action = 'sessions.purge'");
    assert_eq!(audit.len(), 2);
    for row in &audit {
        let details: Json = serde_json::from_str(&row[0]).unwrap();
        assert_eq!(details["deleted"], 1, "{details}");
    }

    // Every tenant has old messages; bad's archive has a column its live
    // table lacks.
    for key in ["ok1", "bad", "ok2"] {
        old_messages(env, key, "x", 5);
    }
    env.tenant_exec(
        "bad",
        "CREATE TABLE pf_user_bad_chat_messages_archive AS SELECT * FROM pf_user_bad_chat_messages WHERE 1 = 0;\n\
         ALTER TABLE pf_user_bad_chat_messages_archive ADD archived_at VARCHAR(40);\n\
         ALTER TABLE pf_user_bad_chat_messages_archive ADD mood VARCHAR(10);",
    );
    let out = env.run(&["--json", "retention", "run", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["username"], "bad");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("mood") && error.contains("align the columns"),
        "{error}"
    );
    assert_eq!(
        count(env.tenant_rows("bad", "SELECT COUNT(*) FROM pf_user_bad_chat_messages")),
        5
    );
    for key in ["ok1", "ok2"] {
        assert_eq!(
            count(env.tenant_rows(
                key,
                &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages_archive")
            )),
            5,
            "{key}"
        );
    }
    // The failure is audited; the policies of the failed tenant's tables
    // did not complete.
    assert_eq!(
        count(env.system_rows(
            "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.retention' AND entity_id = 'bad' AND response_status = 500"
        )),
        1
    );
    let not_done = env.system_rows(
        "SELECT name FROM pf_data_retention_policies WHERE last_run IS NULL ORDER BY name",
    );
    assert_eq!(
        not_done,
        vec![
            vec!["career-analytics".to_string()],
            vec!["chat-deleted".into()],
            vec!["chat-messages".into()]
        ]
    );
    // Unknown policy names are usage errors.
    let out = env.run(&["retention", "run", "--all", "--policy", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = env.run(&["retention", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
on_both_backends!(
    sessions_purge_and_failures,
    sessions_purge_and_failures_sqlite,
    sessions_purge_and_failures_postgres,
    "retsessions"
);

/// A sweep finds the tenants with rows due by probing many at once and
/// visits only those: the idle tenants are reported as a visit would report
/// them, in order; a tenant whose tables a probe cannot read (a column
/// renamed by hand) is still visited and reported failed, and so on SQLite
/// is a tenant file holding a killed run's staged audit rows, which the visit
/// copies into the audit log.
fn idle_tenants_are_probed_not_visited(env: &Env) {
    let names: Vec<String> = (1..=7).map(|i| format!("idle{i}")).collect();
    let mut args = vec!["provision"];
    args.extend(names.iter().map(String::as_str));
    env.ok(&args);
    apply(env, &default_policies());
    old_messages(env, "idle3", "x", 4);
    old_messages(env, "idle6", "y", 2);
    // A young message in an otherwise idle tenant is not due.
    env.tenant_exec(
        "idle1",
        "INSERT INTO pf_user_idle1_chat_conversations (id, title) VALUES ('c', 'young');\n\
         INSERT INTO pf_user_idle1_chat_messages (id, conversation_id, role, content) VALUES ('m', 'c', 'user', 'hi');",
    );
    env.tenant_exec(
        "idle5",
        "ALTER TABLE pf_user_idle5_chat_conversations RENAME COLUMN deleted_at TO removed_at",
    );
    if env.is_sqlite() {
        let row = serde_json::json!({
            "user_id": null, "action": "tenant.retention.batch", "entity_type": "tenant",
            "entity_id": "idle7", "command": "retention run --all", "execution_time_ms": 3,
            "error": null, "details": null
        });
        env.tenant_exec(
            "idle7",
            &format!(
                "CREATE TABLE pf_audit_stage (id TEXT PRIMARY KEY, row_json TEXT NOT NULL);\n\
                 INSERT INTO pf_audit_stage VALUES ('staged-by-a-killed-run', '{row}');"
            ),
        );
    }

    for dry_run in [true, false] {
        let mut args = vec!["--json", "retention", "run", "--all"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
        let tenants = report["tenants"].as_array().unwrap();
        let order: Vec<&str> = tenants
            .iter()
            .map(|t| t["username"].as_str().unwrap())
            .collect();
        assert_eq!(order, names, "{report}");
        let failed = report["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0]["username"], "idle5");
        assert!(
            failed[0]["error"].as_str().unwrap().contains("deleted_at"),
            "{report}"
        );
        for t in tenants {
            let rows: u64 = t["tables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["rows"].as_u64().unwrap())
                .sum();
            let expected = match t["username"].as_str().unwrap() {
                "idle3" => 4,
                "idle6" => 2,
                _ => 0,
            };
            assert_eq!(rows, expected, "{t}");
            if t["username"] != "idle5" {
                assert_eq!(t["status"], "done", "{t}");
                // Every table and policy is in the report, visited or not.
                assert_eq!(t["tables"].as_array().unwrap().len(), 4, "{t}");
            }
        }
    }
    for (key, n) in [("idle3", 4), ("idle6", 2)] {
        assert_eq!(
            count(env.tenant_rows(
                key,
                &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages_archive")
            )),
            n
        );
    }
    assert_eq!(
        count(env.tenant_rows("idle1", "SELECT COUNT(*) FROM pf_user_idle1_chat_messages")),
        1
    );
    if env.is_sqlite() {
        assert_eq!(
            count(env.system_rows(
                "SELECT COUNT(*) FROM pf_audit_log WHERE id = 'staged-by-a-killed-run'"
            )),
            1
        );
        assert_eq!(
            count(env.tenant_rows("idle7", "SELECT COUNT(*) FROM pf_audit_stage")),
            0
        );
    }
}
on_both_backends!(
    idle_tenants_are_probed_not_visited,
    idle_tenants_are_probed_not_visited_sqlite,
    idle_tenants_are_probed_not_visited_postgres,
    "retidle"
);

/// SQLite: a sweep remembers the oldest age values of the tenant files that
/// had nothing due (`retention-oldest.json` in the tenant folder) and reads
/// a file again once it changed, even when its modification time is set
/// back; a file just written is not remembered, and a dry run never writes
/// the memory.
#[test]
fn unchanged_sqlite_files_are_remembered_until_they_change() {
    let env = Env::sqlite();
    env.ok(&["provision", "old1", "old2", "old3"]);
    apply(&env, &default_policies());
    let cache = env.tenant_dir().join("retention-oldest.json");
    let remembered = || -> BTreeSet<String> {
        let text = std::fs::read_to_string(&cache).unwrap();
        let json: Json = serde_json::from_str(&text).unwrap();
        json["tenants"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    // Just provisioned: read, not remembered.
    env.ok(&["retention", "run", "--all"]);
    assert!(remembered().is_empty());
    std::thread::sleep(Duration::from_millis(2200));
    env.ok(&["retention", "run", "--all", "--dry-run"]);
    assert!(remembered().is_empty(), "a dry run writes nothing");
    env.ok(&["retention", "run", "--all"]);
    let all: BTreeSet<String> = ["old1", "old2", "old3"].map(String::from).into();
    assert_eq!(remembered(), all);

    old_messages(&env, "old2", "x", 3);
    let file = common::sqlite_tenant_file(env.path(), "old3");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    old_messages(&env, "old3", "y", 2);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let report = env.json(&["retention", "run", "--all"]);
    assert_eq!(report["totals"]["rows"], 5, "{report}");
    for (key, n) in [("old2", 3), ("old3", 2)] {
        assert_eq!(
            count(env.tenant_rows(
                key,
                &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages_archive")
            )),
            n
        );
    }
    // The swept files changed: only old1 is still remembered.
    assert_eq!(remembered(), BTreeSet::from(["old1".to_string()]));
    // An unreadable memory is only a slower sweep.
    std::fs::write(&cache, "{ not json").unwrap();
    let report = env.json(&["retention", "run", "--all", "--dry-run"]);
    assert_eq!(report["totals"]["rows"], 0, "{report}");
}

/// PostgreSQL: a sweep keeps the tenant's lock across its batches (held by
/// its session, not taken again after each commit). Two sweeps of one tenant
/// at once still move each row once, the second after the first; a sweep
/// killed while it holds the lock leaves no lock behind (it ends with the
/// session), and what it committed is all audited.
#[test]
fn held_tenant_lock_serializes_sweeps_and_dies_with_a_killed_one() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "held_lock");
    let key = "t00";
    env.ok(&["provision", key]);
    apply(&env, &default_policies());
    old_messages(&env, key, "h", 400);
    let sweep = |batch: &str| {
        env.std_cmd()
            .args([
                "retention",
                "run",
                "--all",
                "--batch-size",
                batch,
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start retention run")
    };
    let held = || {
        count(env.system_rows(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ))
    };
    let live = || {
        count(env.tenant_rows(
            key,
            &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages WHERE id LIKE 'h-%'"),
        ))
    };

    // Killed in the middle of its batches, while its session holds the lock.
    let mut child = sweep("1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while live() > 350 {
        assert!(Instant::now() < deadline, "the sweep did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "400 batches take longer"
    );
    assert!(held() >= 1, "the sweep holds the tenant between batches");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() > 0 {
        assert!(Instant::now() < deadline, "the killed sweep's lock stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = live();
    assert!(left > 0 && left < 400, "{left}");

    // Two sweeps at once: one waits for the other's whole sweep.
    let (mut a, mut b) = (sweep("3"), sweep("3"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_eq!(live(), 0);
    assert_eq!(held(), 0, "no lock outlives its sweep");
    let archived = env.tenant_rows(
        key,
        &format!(
            "SELECT id FROM pf_user_{key}_chat_messages_archive WHERE id LIKE 'h-%' ORDER BY id"
        ),
    );
    let ids: BTreeSet<String> = archived.iter().map(|r| r[0].clone()).collect();
    assert_eq!(archived.len(), 400, "each row archived once");
    assert_eq!(ids.len(), 400);
    // Every committed batch audited: the audit rows add up to the moves.
    let audited: u64 = env
        .system_rows(&format!(
            "SELECT details FROM pf_audit_log WHERE action = 'retention.sweep' AND entity_id = 'pf_user_{key}_chat_messages'"
        ))
        .iter()
        .map(|r| {
            let d: Json = serde_json::from_str(&r[0]).unwrap();
            assert_eq!(d["archived"], d["deleted"], "{d}");
            d["deleted"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(audited, 400);
}
