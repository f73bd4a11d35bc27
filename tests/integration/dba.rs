//! The DBA operations of issue 10, through the built binary, on SQLite and on
//! the real PostgreSQL: adopting tenants made by the seed's script, storage
//! figures and alerts, optimizer statistics, exports moved between dialects,
//! preflight checks, shell completions and man pages.

use crate::common;
use crate::common::{on_both_backends, usernames};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::{Backend, Env};
use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::tenant::TENANT_TABLES;
use serde_json::Value as Json;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn count(rows: Vec<Vec<String>>) -> i64 {
    rows[0][0].parse().expect("a count")
}

fn audit_count(env: &Env, action: &str, user: &str, status: u32) -> i64 {
    count(env.system_rows(&format!(
        "SELECT COUNT(*) FROM pf_audit_log WHERE action = '{action}' AND entity_id = '{user}' \
         AND response_status = {status}"
    )))
}

fn env_dialect(env: &Env) -> Dialect {
    env.dialect().parse().unwrap()
}

fn latest_version() -> i64 {
    pathfinder_db::schema::render::Renderer::new(pathfinder_db::db::dialect::Dialect::Sqlite, None)
        .unwrap()
        .latest_version(pathfinder_db::schema::render::Scope::Tenant) as i64
}

// ---------------------------------------------------------------------------
// Adopt

/// A seed column in `dialect`'s words: the seed wrote Oracle's types
/// (VARCHAR2(n), NUMBER(p,s), NUMBER(n), CLOB, DATE, TIMESTAMP), which
/// pathfinder-db maps to each dialect with the `Dialect` type functions;
/// and a primary key column is NOT NULL, as it is on Oracle.
fn seed_column(column: &str, dialect: Dialect) -> String {
    let mut words = column.splitn(3, ' ');
    let (Some(name), Some(ty)) = (words.next(), words.next()) else {
        return column.to_string();
    };
    let rest = words.next().unwrap_or("");
    let args = |t: &str| -> Vec<u32> {
        t.split_once('(')
            .map(|(_, a)| {
                a.trim_end_matches(')')
                    .split(',')
                    .map(|n| n.trim().parse().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ty = match ty.split('(').next().unwrap() {
        "VARCHAR" => dialect.varchar(args(ty)[0]),
        "DECIMAL" => dialect.decimal(args(ty)[0], args(ty)[1]),
        "TEXT" => dialect.clob().to_string(),
        "DATE" => dialect.date().to_string(),
        "TIMESTAMP" => dialect.timestamp().to_string(),
        "SMALLINT" => dialect.flag().to_string(),
        "INTEGER" => dialect.integer(match name {
            "total_roles" => 5,
            "proficiency_score" | "market_demand_score" => 3,
            _ => 10,
        }),
        _ => return column.to_string(),
    };
    let rest = if rest == "PRIMARY KEY" {
        "NOT NULL PRIMARY KEY"
    } else {
        rest
    };
    format!("{name} {ty} {rest}").trim_end().to_string()
}

/// The seed's `create-user-tables.js`, adapted to the dialect: the nine
/// tables with unnamed keys and checks, no career summary, and with
/// `seed_indexes` the indexes under the seed's names, which only the first
/// user could get.
fn seed_ddl(
    dialect: Dialect,
    user: &str,
    seed_indexes: bool,
    without: Option<(&str, &str)>,
) -> String {
    let p = format!("pf_user_{user}_");
    let tables: Vec<(&str, Vec<String>)> = vec![
        (
            "experiences",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "title VARCHAR(255) NOT NULL".into(),
                "company VARCHAR(255) NOT NULL".into(),
                "location VARCHAR(255)".into(),
                "start_date DATE NOT NULL".into(),
                "end_date DATE".into(),
                "is_current SMALLINT DEFAULT 0 CHECK (is_current IN (0, 1))".into(),
                "description TEXT".into(),
                "key_achievements TEXT".into(),
                "technologies_used TEXT".into(),
                "industry VARCHAR(100)".into(),
                "role_type VARCHAR(50)".into(),
                "employment_type VARCHAR(50)".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
                "updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "skills",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                format!(
                    "experience_id VARCHAR(36) REFERENCES {p}experiences (id) ON DELETE CASCADE"
                ),
                "skill_name VARCHAR(100) NOT NULL".into(),
                "skill_category VARCHAR(50)".into(),
                "proficiency_level VARCHAR(20)".into(),
                "years_of_experience DECIMAL(3,1)".into(),
                "last_used DATE".into(),
                "is_primary SMALLINT DEFAULT 0 CHECK (is_primary IN (0, 1))".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "profile_summary",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "total_years_experience DECIMAL(3,1)".into(),
                "industries TEXT".into(),
                "top_skills TEXT".into(),
                "career_highlights TEXT".into(),
                "leadership_experience TEXT".into(),
                "technical_expertise TEXT".into(),
                "last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "quick_summary",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "professional_headline VARCHAR(255)".into(),
                "career_objective VARCHAR(500)".into(),
                "key_strengths TEXT".into(),
                "total_roles INTEGER".into(),
                "years_experience DECIMAL(3,1)".into(),
                "last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "chat_conversations",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "title VARCHAR(255)".into(),
                "context TEXT".into(),
                "model VARCHAR(50) DEFAULT 'gpt-4'".into(),
                "total_messages INTEGER DEFAULT 0".into(),
                "last_message_at TIMESTAMP".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
                "updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "chat_messages",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                format!(
                    "conversation_id VARCHAR(36) NOT NULL REFERENCES {p}chat_conversations (id) ON DELETE CASCADE"
                ),
                "role VARCHAR(20) NOT NULL CHECK (role IN ('user', 'assistant', 'system'))".into(),
                "content TEXT NOT NULL".into(),
                "tokens_used INTEGER".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "career_analytics",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "metric_date DATE NOT NULL".into(),
                "metric_type VARCHAR(50) NOT NULL".into(),
                "metric_value DECIMAL(10,2)".into(),
                "metric_data TEXT".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
                "UNIQUE (metric_date, metric_type)".into(),
            ],
        ),
        (
            "skills_progression",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                "skill_name VARCHAR(100) NOT NULL".into(),
                "assessment_date DATE NOT NULL".into(),
                "proficiency_score INTEGER".into(),
                "growth_rate DECIMAL(5,2)".into(),
                "market_demand_score INTEGER".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
            ],
        ),
        (
            "pert_responses",
            vec![
                "id VARCHAR(36) PRIMARY KEY".into(),
                format!("experience_id VARCHAR(36) REFERENCES {p}experiences (id)"),
                "competency_id VARCHAR(36) NOT NULL".into(),
                "sub_competency_id VARCHAR(36)".into(),
                "situation TEXT NOT NULL".into(),
                "task TEXT NOT NULL".into(),
                "action TEXT NOT NULL".into(),
                "result TEXT NOT NULL".into(),
                "reflection TEXT".into(),
                "evidence_files TEXT".into(),
                "word_count INTEGER".into(),
                "status VARCHAR(20) DEFAULT 'draft'".into(),
                "reviewer_feedback TEXT".into(),
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
                "updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP".into(),
                "submitted_at TIMESTAMP".into(),
            ],
        ),
    ];
    let mut sql = String::new();
    for (table, columns) in tables {
        let columns: Vec<String> = columns
            .into_iter()
            .filter(|c| {
                without.is_none_or(|(t, col)| t != table || !c.starts_with(&format!("{col} ")))
            })
            .map(|c| seed_column(&c, dialect))
            .collect();
        sql.push_str(&format!(
            "CREATE TABLE {p}{table} (\n  {}\n);\n",
            columns.join(",\n  ")
        ));
    }
    if seed_indexes {
        sql.push_str(&format!(
            "CREATE INDEX idx_exp_dates ON {p}experiences (start_date, end_date);\n\
             CREATE INDEX idx_exp_company ON {p}experiences (company);\n\
             CREATE INDEX idx_skills_name ON {p}skills (skill_name);\n\
             CREATE INDEX idx_skills_category ON {p}skills (skill_category);\n\
             CREATE INDEX idx_conv_updated ON {p}chat_conversations (updated_at);\n\
             CREATE INDEX idx_msg_conv ON {p}chat_messages (conversation_id, created_at);\n"
        ));
    }
    sql
}

/// Names of the tables of `key` that exist where the seed put them (the main
/// file on SQLite, the schema on PostgreSQL).
fn seed_tables_left(env: &Env, key: &str) -> i64 {
    let sql = match env.backend {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'pf\\_user\\_{key}\\_%' ESCAPE '\\'"
        ),
        Backend::Postgres(_) => format!(
            "SELECT COUNT(*) FROM pg_class WHERE relkind IN ('r', 'm') AND relname LIKE 'pf\\_user\\_{key}\\_%'"
        ),
    };
    count(env.system_rows(&sql))
}

fn adopt_seed_tenants(env: &Env) {
    env.ok(&["init"]);
    env.system_exec(&seed_ddl(env_dialect(env), "alice", true, None));
    env.system_exec(&seed_ddl(env_dialect(env), "bob", false, None));
    env.system_exec(&seed_ddl(
        env_dialect(env),
        "carol",
        false,
        Some(("experiences", "location")),
    ));
    // dave's tables were made by hand from pathfinder-db's own version 1.
    let ddl = env.ok(&["render", "dave", "--to", "1", "--dialect", env.dialect()]);
    env.system_exec(&ddl);
    env.system_exec(
        "INSERT INTO pf_user_alice_experiences (id, title, company, start_date) VALUES ('e1', 'Engineer', 'Acme', '2020-01-01');
         INSERT INTO pf_user_alice_skills (id, experience_id, skill_name, years_of_experience) VALUES ('s1', 'e1', 'Rust', 12.5);
         INSERT INTO pf_user_bob_chat_conversations (id, title) VALUES ('c1', 'Hi');
         INSERT INTO pf_user_bob_chat_messages (id, conversation_id, role, content) VALUES ('m1', 'c1', 'user', 'Hello ✓');",
    );

    // --scan finds the four by their nine tables; without --repair only dave
    // matches a version exactly; nothing changes in a dry run.
    let (code, doc) = env.json_run(&["adopt", "--scan", "--dry-run"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(usernames(&doc["tenants"]), ["dave"]);
    assert_eq!(doc["tenants"][0]["version"], 1);
    assert_eq!(usernames(&doc["failed"]), ["alice", "bob", "carol"]);
    let failed = |user: &str| -> Json {
        doc["failed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["username"] == user)
            .cloned()
            .unwrap()
    };
    assert!(
        failed("bob")["error"]
            .as_str()
            .unwrap()
            .contains("--repair"),
        "{doc}"
    );
    assert!(
        failed("bob")["drift"]
            .as_array()
            .unwrap()
            .contains(&Json::from("missing table career_summary")),
        "{doc}"
    );
    assert!(
        failed("carol")["drift"]
            .as_array()
            .unwrap()
            .contains(&Json::from("missing column experiences.location")),
        "{doc}"
    );
    let (code, doc) = env.json_run(&["adopt", "--scan", "--dry-run", "--repair"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(usernames(&doc["tenants"]), ["alice", "bob", "dave"]);
    let alice = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["created"].as_array().unwrap().len(), 7, "{alice}");
    assert!(
        alice["kept_indexes"]
            .as_array()
            .unwrap()
            .contains(&Json::from("idx_exp_dates")),
        "{alice}"
    );
    assert_eq!(env.json(&["tenants"])["tenants"], Json::Array(vec![]));

    // dave matches version 1 exactly: adopted without --repair.
    let out = env.ok(&["adopt", "dave"]);
    assert!(out.contains("adopted dave at version 1"), "{out}");
    // carol lacks a column: refused with the drift, also with --repair.
    let out = env.run(&["adopt", "carol", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("missing column experiences.location"),
        "{}",
        stderr(&out)
    );
    // bob without --repair: refused, and told how.
    let out = env.run(&["adopt", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("adopt bob --repair"),
        "{}",
        stderr(&out)
    );

    // With --repair: the tenant-named indexes and the career summary are created.
    let doc = env.json(&["adopt", "alice", "bob", "--repair"]);
    assert_eq!(usernames(&doc["tenants"]), ["alice", "bob"]);
    for t in doc["tenants"].as_array().unwrap() {
        let created: Vec<&str> = t["created"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let user = t["username"].as_str().unwrap();
        assert!(
            created.contains(&format!("pf_user_{user}_exp_dates_ix").as_str()),
            "{t}"
        );
        assert!(
            created.contains(&format!("pf_user_{user}_career_summary").as_str()),
            "{t}"
        );
        assert_eq!(created.len(), 7, "{t}");
    }
    assert_eq!(doc["failed"], Json::Array(vec![]));

    // Registered, baselined at version 1 without running V1, rows kept.
    let tenants = env.json(&["tenants"]);
    for t in tenants["tenants"].as_array().unwrap() {
        assert_eq!(t["status"], "active", "{t}");
        assert_eq!(t["schema_version"], 1, "{t}");
    }
    assert_eq!(usernames(&tenants["tenants"]), ["alice", "bob", "dave"]);
    assert_eq!(
        env.tenant_rows("alice", "SELECT version FROM pf_user_alice_schema_history"),
        vec![vec!["1".to_string()]]
    );
    assert_eq!(
        count(env.tenant_rows("alice", "SELECT COUNT(*) FROM pf_user_alice_skills")),
        1
    );
    assert_eq!(
        env.tenant_rows("bob", "SELECT content FROM pf_user_bob_chat_messages"),
        vec![vec!["Hello ✓".to_string()]]
    );
    assert_eq!(audit_count(env, "tenant.adopt", "alice", 200), 1);
    if env.is_sqlite() {
        // Moved out of the main file into tenant files of their own.
        for user in ["alice", "bob", "dave"] {
            assert_eq!(seed_tables_left(env, user), 0, "{user}");
            assert!(
                common::sqlite_tenant_file(env.path(), user).exists(),
                "{user}"
            );
        }
        assert_eq!(seed_tables_left(env, "carol"), 9);
    }
    let out = env.run(&["verify", "alice", "bob", "dave"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // They migrate to the latest version like any tenant.
    env.ok(&["migrate", "--all"]);
    let latest = latest_version();
    for t in env.json(&["tenants"])["tenants"].as_array().unwrap() {
        assert_eq!(t["schema_version"], latest, "{t}");
    }
    let out = env.run(&["verify", "--all"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    env.tenant_exec(
        "bob",
        "UPDATE pf_user_bob_chat_messages SET deleted_at = '2024-01-01 00:00:00'",
    );

    // Only carol is left to find, and she is refused.
    let (code, doc) = env.json_run(&["adopt", "--scan"]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(usernames(&doc["failed"]), ["carol"]);

    // Names: not a safe identifier; too long for PostgreSQL without a key.
    let out = env.run(&["adopt", "John.Doe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a safe identifier"),
        "{}",
        stderr(&out)
    );
    if !env.is_sqlite() {
        let long = "a_username_far_too_long_for_pg";
        let out = env.run(&["adopt", long]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--tenant-key"), "{}", stderr(&out));
        env.system_exec(&seed_ddl(env_dialect(env), "lng", false, None));
        env.ok(&["adopt", long, "--tenant-key", "lng", "--repair"]);
        let t = env.json(&["tenants"]);
        let row = t["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["username"] == long)
            .unwrap()
            .clone();
        assert_eq!(row["tenant_key"], "lng");
    }
}

/// Tables made at an older version match it exactly, and the latest only
/// with its indexes added: adopt takes the exact match, and `migrate`
/// brings the tenant up the audited way.
fn adopt_prefers_an_exact_older_version(env: &Env) {
    env.ok(&["init"]);
    let ddl = env.ok(&["render", "erin", "--to", "2", "--dialect", env.dialect()]);
    env.system_exec(&ddl);
    let (code, doc) = env.json_run(&["adopt", "erin", "--dry-run"]);
    assert_eq!(code, Some(0), "{doc}");
    let version = doc["tenants"][0]["version"].as_i64().unwrap();
    assert!((2..=3).contains(&version), "{doc}");
    env.ok(&["adopt", "erin"]);
    // Asked again (a run killed after its commit is re-run): nothing to do.
    let again = env.ok(&["adopt", "erin"]);
    assert!(again.contains("nothing to do"), "{again}");
    env.ok(&["migrate", "erin"]);
    env.ok(&["verify", "erin"]);
}
on_both_backends!(
    adopt_prefers_an_exact_older_version,
    adopt_prefers_an_exact_older_version_sqlite,
    adopt_prefers_an_exact_older_version_postgres,
    "adoptold"
);

on_both_backends!(
    adopt_seed_tenants,
    adopt_finds_repairs_and_registers_seed_tenants_sqlite,
    adopt_finds_repairs_and_registers_seed_tenants_postgres,
    "adopt"
);

// ---------------------------------------------------------------------------
// Stats and analyze

fn tenant_entry(doc: &Json, user: &str) -> Json {
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["username"] == user)
        .cloned()
        .unwrap_or_else(|| panic!("{user} not in {doc}"))
}

fn table_entry(tenant: &Json, table: &str) -> Json {
    tenant["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .cloned()
        .unwrap_or_else(|| panic!("{table} not in {tenant}"))
}

fn storage_stats_and_analyze(env: &Env) {
    env.ok(&["provision", "alice", "bob"]);
    let big = "x".repeat(300_000);
    env.tenant_exec(
        "alice",
        &format!(
            "INSERT INTO pf_user_alice_experiences (id, title, company, start_date, description) VALUES
               ('e1', 'A', 'Acme', '2020-01-01', '{big}'), ('e2', 'B', 'Beta', '2021-01-01', NULL), ('e3', 'C', 'Core', '2022-01-01', NULL);"
        ),
    );
    env.tenant_exec(
        "bob",
        "INSERT INTO pf_user_bob_experiences (id, title, company, start_date) VALUES ('e1', 'A', 'Acme', '2020-01-01');",
    );

    let doc = env.json(&["stats", "--all"]);
    // Largest first; the totals are the sum.
    assert_eq!(usernames(&doc["tenants"]), ["alice", "bob"]);
    assert_eq!(doc["tenants"][0]["username"], "alice", "{doc}");
    let (alice, bob) = (tenant_entry(&doc, "alice"), tenant_entry(&doc, "bob"));
    assert!(alice["bytes"].as_u64() > bob["bytes"].as_u64(), "{doc}");
    assert_eq!(
        doc["totals"]["bytes"].as_u64().unwrap(),
        alice["bytes"].as_u64().unwrap() + bob["bytes"].as_u64().unwrap()
    );
    assert_eq!(doc["totals"]["tenants"], 2);
    let experiences = table_entry(&alice, "experiences");
    match &env.backend {
        Backend::Sqlite => {
            // The tenant file is the tenant's size; rows are counted.
            let file = common::sqlite_tenant_file(env.path(), "alice");
            let wal = std::fs::metadata(format!("{}-wal", file.display()))
                .map(|m| m.len())
                .unwrap_or(0);
            assert_eq!(
                alice["bytes"].as_u64().unwrap(),
                std::fs::metadata(&file).unwrap().len() + wal
            );
            assert_eq!(experiences["rows"], 3);
            assert_eq!(alice["rows_exact"], true);
            // dbstat: the pages of the table and its indexes.
            let pages = count(env.tenant_rows(
                "alice",
                "SELECT SUM(d.pgsize) FROM dbstat('main', 1) d JOIN sqlite_master m ON m.name = d.name WHERE m.tbl_name = 'pf_user_alice_experiences'",
            ));
            assert_eq!(experiences["bytes"].as_i64().unwrap(), pages);
            assert!(pages > 300_000, "{pages}");
            // No statistics before analyze.
            assert_eq!(
                count(env.tenant_rows(
                    "alice",
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
                )),
                0
            );
        }
        Backend::Postgres(_) => {
            // Every figure is the catalog's; rows are unknown until analyzed.
            for t in alice["tables"].as_array().unwrap() {
                let name = format!("pf_user_alice_{}", t["table"].as_str().unwrap());
                let size =
                    count(env.system_rows(&format!("SELECT pg_total_relation_size('{name}')")));
                assert_eq!(t["bytes"].as_i64().unwrap(), size, "{name}");
            }
            assert!(
                experiences["bytes"].as_i64().unwrap() > 8192,
                "{experiences}"
            );
            assert_eq!(experiences["rows"], Json::Null, "{experiences}");
            assert_eq!(alice["rows_exact"], false);
            let exact = env.json(&["stats", "alice", "--exact"]);
            assert_eq!(
                table_entry(&tenant_entry(&exact, "alice"), "experiences")["rows"],
                3
            );
        }
    }

    // Alerts: the tenants over a threshold are listed and the exit code is 1.
    let threshold = bob["bytes"].as_u64().unwrap().to_string();
    let (code, doc) = env.json_run(&["stats", "--all", "--alert-bytes", &threshold]);
    assert_eq!(code, Some(1));
    assert_eq!(usernames(&doc["alerts"]), ["alice"]);
    let out = env.run(&["stats", "--all", "--alert-bytes", &threshold]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("ALERT alice"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("ALERT bob"), "{}", stdout(&out));
    let (code, _) = env.json_run(&["stats", "--all", "--alert-bytes", "1T"]);
    assert_eq!(code, Some(0));
    let top = env.json(&["stats", "--all", "--top", "1"]);
    assert_eq!(usernames(&top["tenants"]), ["alice"]);
    assert_eq!(top["totals"]["tenants"], 2);

    // analyze changes what the catalog reports.
    let doc = env.json(&["analyze", "--all"]);
    assert_eq!(doc["analyzed"], 2, "{doc}");
    assert_eq!(doc["failed"], Json::Array(vec![]));
    match &env.backend {
        Backend::Sqlite => {
            let stat = env.tenant_rows(
                "alice",
                "SELECT stat FROM sqlite_stat1 WHERE tbl = 'pf_user_alice_experiences' AND idx = 'pf_user_alice_exp_dates_ix'",
            );
            assert!(stat[0][0].starts_with("3 "), "{stat:?}");
        }
        Backend::Postgres(_) => {
            assert_eq!(
                env.system_rows("SELECT reltuples::int8 FROM pg_class WHERE relname = 'pf_user_alice_experiences'"),
                vec![vec!["3".to_string()]]
            );
            let doc = env.json(&["stats", "alice"]);
            assert_eq!(
                table_entry(&tenant_entry(&doc, "alice"), "experiences")["rows"],
                3
            );
        }
    }
    assert_eq!(audit_count(env, "tenant.analyze", "alice", 200), 1);
    // A named user that is not active is an error, the others go on.
    env.system_exec("UPDATE pf_tenants SET status = 'failed' WHERE username = 'bob'");
    let out = env.run(&["analyze", "alice", "bob"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

on_both_backends!(
    storage_stats_and_analyze,
    stats_match_the_catalog_and_analyze_updates_it_sqlite,
    stats_match_the_catalog_and_analyze_updates_it_postgres,
    "stats"
);

// ---------------------------------------------------------------------------
// Export and import between dialects

/// Text no dialect may change: several scripts, emoji, quotes, backslashes,
/// line breaks and tabs.
const TRICKY: &str = "Zoë 😀 \"quoted\" 'single' \\back\\ ∑ 日本語\nline\ttab";

/// One row per tenant table with a tricky value in every column, and a
/// second with NULL wherever NULL is allowed.
fn fill_tricky(file: &Path) {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    let clob = format!("{TRICKY} ").repeat(100_000); // about 4 MB
    let ts = "2024-02-29 23:59:59.123456";
    let ts_half = "2024-01-01 10:00:00.5";
    let short = "naïve ☃ \"x\"";
    conn.execute(
        "INSERT INTO pf_user_alice_experiences VALUES ('exp-1', ?1, ?1, ?1, '2020-02-29', '2024-12-31', 1, ?2, ?1, ?1, ?3, ?3, ?3, ?4, ?5)",
        rusqlite::params![TRICKY, clob, short, ts, ts_half],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_experiences (id, title, company, start_date) VALUES ('exp-2', 'T', 'C', '1999-01-01')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_skills VALUES ('skl-1', 'exp-1', ?1, ?2, ?2, 12.5, '2024-02-29', 1, ?3)",
        rusqlite::params![TRICKY, short, ts],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_skills (id, skill_name, years_of_experience) VALUES ('skl-2', 'Rust', 0.1)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_profile_summary VALUES ('psum-1', 0.1, ?1, ?1, ?1, ?1, ?1, ?2)",
        rusqlite::params![TRICKY, ts_half],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_quick_summary VALUES ('qsum-1', ?1, ?1, ?1, 12345, 99.9, ?2)",
        rusqlite::params![TRICKY, ts],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_chat_conversations VALUES ('conv-1', ?1, ?2, ?3, 2147483647, ?4, ?4, ?5, ?4)",
        rusqlite::params![TRICKY, clob, short, ts, ts_half],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_chat_messages VALUES ('msg-1', 'conv-1', 'assistant', ?1, 0, ?2, NULL)",
        rusqlite::params![TRICKY, ts],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_chat_messages (id, conversation_id, role, content) VALUES ('msg-2', 'conv-1', 'user', '')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_career_analytics VALUES ('ana-1', '2024-02-29', ?1, 12345678.91, ?2, ?3)",
        rusqlite::params![short, TRICKY, ts],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_skills_progression VALUES ('sprog-1', ?1, '2000-01-01', 100, -0.05, 0, ?2)",
        rusqlite::params![TRICKY, ts_half],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pf_user_alice_pert_responses VALUES ('pert-1', 'exp-1', 'c-1', 'sc-1', ?1, ?1, ?1, ?2, ?1, ?1, 0, 'submitted', ?1, ?3, ?3, ?4)",
        rusqlite::params![TRICKY, clob, ts, ts_half],
    )
    .unwrap();
}

/// An export's rows: table -> id -> row.
fn export_rows(path: &Path) -> BTreeMap<String, BTreeMap<String, serde_json::Map<String, Json>>> {
    let mut out: BTreeMap<String, BTreeMap<String, serde_json::Map<String, Json>>> =
        BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let doc: Json = serde_json::from_str(line).unwrap();
        if let Some(table) = doc["table"].as_str() {
            let row = doc["row"].as_object().unwrap().clone();
            let id = row["id"].as_str().unwrap().to_string();
            out.entry(table.to_string()).or_default().insert(id, row);
        }
    }
    out
}

fn timestamp(s: &str) -> Option<time::PrimitiveDateTime> {
    time::PrimitiveDateTime::parse(
        &s.replacen('T', " ", 1),
        time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .ok()
}

/// Every value of `a` equals `b`'s: the same text, the same number, or the
/// same point in time (dialects spell fractions differently). Defaults filled
/// at load time are not in the rows compared (none are: every column is given).
fn assert_same_values(a: &Path, b: &Path) {
    let (a, b) = (export_rows(a), export_rows(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut compared = 0;
    for (table, rows) in &a {
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            b[table].keys().collect::<Vec<_>>(),
            "{table}"
        );
        for (id, row) in rows {
            let other = &b[table][id];
            assert_eq!(
                row.keys().collect::<Vec<_>>(),
                other.keys().collect::<Vec<_>>(),
                "{table} {id}"
            );
            for (column, x) in row {
                let y = &other[column];
                let same = match (x, y) {
                    (Json::Number(m), Json::Number(n)) => m.as_f64() == n.as_f64(),
                    (Json::String(s), Json::String(t)) => {
                        s == t || timestamp(s).is_some() && timestamp(s) == timestamp(t)
                    }
                    _ => x == y,
                };
                assert!(
                    same,
                    "{table} {id} {column}: {:.80} vs {:.80}",
                    x.to_string(),
                    y.to_string()
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 80, "only {compared} values compared");
}

#[test]
fn an_export_moves_between_dialects_value_for_value() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let sqlite = Env::sqlite();
    let pg = Env::postgres(&server, "move");
    sqlite.ok(&["provision", "alice"]);
    fill_tricky(&common::sqlite_tenant_file(sqlite.path(), "alice"));
    // The tricky values in every column, NULLs where allowed, a 4 MB CLOB.
    let a = sqlite.path().join("alice.jsonl");
    sqlite.ok(&["export", "alice", "--out", a.to_str().unwrap()]);
    let verified = sqlite.ok(&["export", "--verify", a.to_str().unwrap()]);
    assert!(verified.contains("intact"), "{verified}");

    // SQLite -> PostgreSQL, then back out: value for value the same.
    let out = pg.ok(&["import", a.to_str().unwrap()]);
    assert!(out.contains("imported 12 rows into alice"), "{out}");
    assert_eq!(
        pg.system_rows("SELECT years_of_experience::text, last_used::text FROM pf_user_alice_skills WHERE id = 'skl-1'"),
        vec![vec!["12.5".to_string(), "2024-02-29".to_string()]]
    );
    assert_eq!(
        pg.system_rows("SELECT total_years_experience::text FROM pf_user_alice_profile_summary"),
        vec![vec!["0.1".to_string()]]
    );
    assert_eq!(
        pg.system_rows("SELECT created_at::text FROM pf_user_alice_skills WHERE id = 'skl-1'"),
        vec![vec!["2024-02-29 23:59:59.123456".to_string()]]
    );
    assert_eq!(
        pg.system_rows("SELECT count(*) FROM pf_user_alice_experiences WHERE location IS NULL AND end_date IS NULL"),
        vec![vec!["1".to_string()]]
    );
    let b = pg.path().join("alice-pg.jsonl");
    pg.ok(&["export", "alice", "--out", b.to_str().unwrap()]);
    assert_same_values(&a, &b);
    assert_eq!(audit_count(&pg, "tenant.import", "alice", 200), 1);

    // PostgreSQL -> SQLite, as another user: the same again.
    let back = Env::sqlite();
    back.ok(&["import", b.to_str().unwrap(), "--as", "alice_again"]);
    let c = back.path().join("again.jsonl");
    back.ok(&["export", "alice_again", "--out", c.to_str().unwrap()]);
    assert_same_values(&b, &c);

    // A tampered export is refused by verify and by import, which leaves nothing.
    let text = std::fs::read_to_string(&a).unwrap();
    let tampered = pg.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("12345678.91", "12345678.92", 1)).unwrap();
    let out = pg.run(&["export", "--verify", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("changed or damaged"),
        "{}",
        stderr(&out)
    );
    let out = pg.run(&["import", tampered.to_str().unwrap(), "--as", "mallory"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("changed or damaged"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        count(pg.system_rows("SELECT COUNT(*) FROM pf_tenants WHERE username = 'mallory'")),
        0
    );
    assert_eq!(
        count(pg.system_rows(
            "SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'pf\\_user\\_mallory%'"
        )),
        0
    );

    // A value PostgreSQL cannot hold exactly (nanoseconds) fails the import
    // after loading: rolled back, the tenant deprovisioned and forgotten.
    sqlite.tenant_exec(
        "alice",
        "UPDATE pf_user_alice_skills SET created_at = '2024-01-01 10:00:00.123456789' WHERE id = 'skl-2'",
    );
    let n = sqlite.path().join("nanos.jsonl");
    sqlite.ok(&["export", "alice", "--out", n.to_str().unwrap()]);
    let out = pg.run(&["import", n.to_str().unwrap(), "--as", "nina"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing was kept"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("created_at"), "{}", stderr(&out));
    assert_eq!(
        count(pg.system_rows("SELECT COUNT(*) FROM pf_tenants WHERE username = 'nina'")),
        0
    );
    assert_eq!(
        count(
            pg.system_rows("SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'pf\\_user\\_nina%'")
        ),
        0
    );
    assert_eq!(audit_count(&pg, "tenant.import", "nina", 500), 1);

    // The same import again (a re-run after a kill past its commit):
    // nothing to do. Another file over the existing user is refused before
    // anything changes.
    let again = pg.ok(&["import", a.to_str().unwrap()]);
    assert!(
        again.contains("already (tenant alice): nothing to do"),
        "{again}"
    );
    assert_eq!(audit_count(&pg, "tenant.import", "alice", 200), 1);
    let out = pg.run(&["import", n.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--as"), "{}", stderr(&out));
    // Once it changed otherwise (deprovisioned, then provisioned afresh),
    // the file is no longer what the tenant was made from.
    pg.ok(&["deprovision", "alice", "--yes"]);
    pg.ok(&["provision", "alice"]);
    let out = pg.run(&["import", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn export_of_a_live_tenant(env: &Env) {
    env.ok(&["provision", "carol"]);
    env.tenant_exec(
        "carol",
        "INSERT INTO pf_user_carol_experiences (id, title, company, start_date) VALUES ('e1', 'A', 'Acme', '2020-01-01');",
    );
    let out = env.path().join("carol.jsonl");
    env.ok(&["export", "carol", "--out", out.to_str().unwrap()]);
    // Nothing was dropped or changed, and the file is never overwritten.
    assert_eq!(
        count(env.tenant_rows("carol", "SELECT COUNT(*) FROM pf_user_carol_experiences")),
        1
    );
    env.tenant_exec(
        "carol",
        "INSERT INTO pf_user_carol_experiences (id, title, company, start_date) VALUES ('e2', 'B', 'Beta', '2021-01-01');",
    );
    let again = env.run(&["export", "carol", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    let doc = env.json(&["export", "--verify", out.to_str().unwrap()]);
    assert_eq!(doc["manifest"]["rows"], 1);
    assert_eq!(doc["header"]["username"], "carol");
    assert_eq!(audit_count(env, "tenant.export", "carol", 200), 1);
    // deprovision --export writes the same format, which import takes back.
    let gone = env.path().join("gone.jsonl");
    env.ok(&[
        "deprovision",
        "carol",
        "--yes",
        "--export",
        gone.to_str().unwrap(),
    ]);
    env.ok(&["import", gone.to_str().unwrap()]);
    assert_eq!(
        count(env.tenant_rows("carol", "SELECT COUNT(*) FROM pf_user_carol_experiences")),
        2
    );

    // A column added by hand would make a file import refuses: neither
    // export nor deprovision --export writes it, and nothing is dropped.
    env.tenant_exec(
        "carol",
        "ALTER TABLE pf_user_carol_experiences ADD COLUMN badge VARCHAR(20)",
    );
    let drifted = env.path().join("drifted.jsonl");
    for args in [
        vec!["export", "carol", "--out", drifted.to_str().unwrap()],
        vec![
            "deprovision",
            "carol",
            "--yes",
            "--export",
            drifted.to_str().unwrap(),
        ],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("experiences has column(s) badge") && err.contains("verify carol"),
            "{err}"
        );
        assert!(!drifted.exists(), "{args:?} wrote {}", drifted.display());
    }
    assert_eq!(
        count(env.tenant_rows("carol", "SELECT COUNT(*) FROM pf_user_carol_experiences")),
        2
    );
    // With the drift removed, the export goes ahead.
    env.tenant_exec(
        "carol",
        "ALTER TABLE pf_user_carol_experiences DROP COLUMN badge",
    );
    env.ok(&["export", "carol", "--out", drifted.to_str().unwrap()]);
}

/// A deprovisioning never reports rows kept that were not: a tenant whose
/// tables were dropped by hand has nothing to export or archive, and a
/// user deprovisioned already (by an earlier run, another mode) has no rows
/// left for a new export.
fn deprovision_never_claims_rows_it_did_not_keep(env: &Env) {
    env.ok(&["provision", "gone", "twice", "kept"]);
    if env.is_sqlite() {
        std::fs::remove_file(common::sqlite_tenant_file(env.path(), "gone")).unwrap();
    } else {
        let drop: Vec<String> = TENANT_TABLES
            .iter()
            .rev()
            .map(|t| format!("DROP TABLE pf_user_gone_{t} CASCADE;"))
            .collect();
        env.tenant_exec("gone", &drop.join("\n"));
    }
    let file = env.path().join("gone.jsonl");
    for extra in [vec!["--export", file.to_str().unwrap()], vec!["--archive"]] {
        let mut args = vec!["deprovision", "gone", "--yes"];
        args.extend(&extra);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("has no tables"), "{}", stderr(&out));
        assert!(!file.exists());
    }
    let status = |user: &str| {
        env.system_rows(&format!(
            "SELECT status FROM pf_tenants WHERE username = '{user}'"
        ))[0][0]
            .clone()
    };
    assert_eq!(status("gone"), "active");
    let out = env.ok(&["deprovision", "gone", "--yes"]);
    assert!(out.contains("it had no tables"), "{out}");
    assert_eq!(status("gone"), "deprovisioned");

    let first = env.path().join("twice.jsonl");
    let other = env.path().join("other.jsonl");
    env.ok(&[
        "deprovision",
        "twice",
        "--yes",
        "--export",
        first.to_str().unwrap(),
    ]);
    // The same command again: its export is there, nothing to do.
    let again = env.ok(&[
        "deprovision",
        "twice",
        "--yes",
        "--export",
        first.to_str().unwrap(),
    ]);
    assert!(again.contains("nothing to do"), "{again}");
    for extra in [vec!["--export", other.to_str().unwrap()], vec!["--archive"]] {
        let mut args = vec!["deprovision", "twice", "--yes"];
        args.extend(&extra);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("deprovisioned already"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!other.exists());
    env.ok(&["deprovision", "kept", "--yes", "--archive"]);
    let again = env.ok(&["deprovision", "kept", "--yes", "--archive"]);
    assert!(again.contains("nothing to do"), "{again}");

    // One table gone: the rest are kept, and the missing one is named.
    env.ok(&["provision", "part"]);
    env.tenant_exec("part", "DROP TABLE pf_user_part_pert_responses");
    let file = env.path().join("part.jsonl");
    let out = env.run(&[
        "--quiet",
        "deprovision",
        "part",
        "--yes",
        "--export",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("part lacks table(s) pert_responses"),
        "{}",
        stderr(&out)
    );
    assert!(file.exists());
}

on_both_backends!(
    deprovision_never_claims_rows_it_did_not_keep,
    deprovision_never_claims_rows_it_did_not_keep_sqlite,
    deprovision_never_claims_rows_it_did_not_keep_postgres,
    "deprokept"
);

on_both_backends!(
    export_of_a_live_tenant,
    export_of_a_live_tenant_changes_nothing_and_imports_back_sqlite,
    export_of_a_live_tenant_changes_nothing_and_imports_back_postgres,
    "export"
);

// ---------------------------------------------------------------------------
// Doctor

fn line_of<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.split_once(' ')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{check}:")))
        })
        .unwrap_or_else(|| panic!("no {check} line in:\n{out}"))
}

#[test]
fn doctor_reports_failed_tenants_missing_tables_and_strays_sqlite() {
    let env = Env::sqlite();
    // No database: one failing line, nothing created.
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        line_of(&stdout(&out), "database").starts_with("fail"),
        "{}",
        stdout(&out)
    );
    assert!(!env.main_file().exists());

    env.ok(&["provision", "alice", "bob", "carol"]);
    let out = env.ok(&["doctor"]);
    assert!(out.lines().all(|l| l.starts_with("ok ")), "{out}");
    assert!(line_of(&out, "system schema").contains("current"), "{out}");

    env.system_exec(
        "UPDATE pf_tenants SET status = 'failed', last_error = 'disk full' WHERE username = 'bob'",
    );
    std::fs::remove_file(common::sqlite_tenant_file(env.path(), "carol")).unwrap();
    env.system_exec(&seed_ddl(env_dialect(&env), "zed", false, None));
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let tenants = line_of(&text, "tenants");
    assert!(
        tenants.starts_with("fail") && tenants.contains("bob (failed: disk full)"),
        "{text}"
    );
    assert!(tenants.contains("migrate --all"), "{text}");
    let registry = line_of(&text, "registry");
    assert!(
        registry.starts_with("fail") && registry.contains("carol"),
        "{text}"
    );
    let catalog = line_of(&text, "catalog");
    assert!(
        catalog.starts_with("fail") && catalog.contains("pf_user_zed_experiences"),
        "{text}"
    );
    assert!(catalog.contains("adopt --scan"), "{text}");
    let (_, doc) = env.json_run(&["doctor"]);
    assert_eq!(doc["ok"], false);
    assert_eq!(usernames(&doc["failed"]), ["bob"]);
}

/// A role that is dropped (with its grants) when the test ends, however it ends.
struct Role {
    server: String,
    db_url: String,
    name: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.db_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP OWNED BY {}", self.name));
        }
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

#[test]
fn doctor_reports_a_role_without_create_and_a_failed_tenant_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "doctor");
    env.ok(&["provision", "alice", "bob"]);
    let out = env.ok(&["doctor"]);
    assert!(line_of(&out, "grants").starts_with("ok"), "{out}");
    assert!(line_of(&out, "server").contains("PostgreSQL"), "{out}");

    let role = Role {
        server: server.clone(),
        db_url: env.url.clone(),
        name: format!("pf_doctor_{}", std::process::id()),
    };
    let db = env
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    env.system_exec(&format!(
        "DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT CONNECT ON DATABASE {db} TO {r}; GRANT USAGE ON SCHEMA public TO {r};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r};
         UPDATE pf_tenants SET status = 'failed', last_error = 'lost connection' WHERE username = 'bob';",
        r = role.name
    ));
    let mut url = url::Url::parse(&env.url).unwrap();
    url.set_username(&role.name).unwrap();
    url.set_password(None).unwrap();
    let mut cmd = common::pathfinder(env.path());
    let out = cmd
        .args(["--database-url", url.as_str(), "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let grants = line_of(&text, "grants");
    assert!(grants.starts_with("fail"), "{text}");
    assert!(
        grants.contains(&format!("GRANT CREATE ON SCHEMA public TO {}", role.name)),
        "{text}"
    );
    let tenants = line_of(&text, "tenants");
    assert!(
        tenants.starts_with("fail") && tenants.contains("bob (failed: lost connection)"),
        "{text}"
    );
    assert!(line_of(&text, "system schema").starts_with("ok"), "{text}");

    // A deprovisioned tenant keeps archives at most: a live table of its
    // name is left behind (a provision of the name would start beside it).
    env.ok(&["deprovision", "alice", "--yes", "--archive"]);
    let out = stdout(&env.run(&["doctor"]));
    assert!(
        line_of(&out, "catalog").starts_with("ok"),
        "archives are kept: {out}"
    );
    env.system_exec("CREATE TABLE pf_user_alice_skills (id VARCHAR(36))");
    let out = env.run(&["doctor"]);
    let text = stdout(&out);
    let catalog = line_of(&text, "catalog");
    assert!(
        catalog.starts_with("fail")
            && catalog.contains("pf_user_alice_skills (tenant alice is deprovisioned"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Completions and man pages

#[test]
fn completions_for_every_shell_and_man_pages() {
    let dir = common::tempdir();
    // A broken configuration file does not stop them.
    std::fs::write(
        dir.path().join("pathfinder-db.toml"),
        "this is not toml = =",
    )
    .unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = common::pathfinder(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in ["adopt", "stats", "analyze", "export", "import", "doctor"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let out = common::pathfinder(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = common::pathfinder(dir.path()).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(".TH pathfinder-db 1"),
        "{}",
        stdout(&out)
    );
    let pages = dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    // A page that is a symlink is replaced, not written through; another
    // file in the folder is neither touched nor counted.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, pages.join("pathfinder-db.1")).unwrap();
    std::fs::write(pages.join("other.1"), "other").unwrap();
    let out = common::pathfinder(dir.path())
        .args(["man", "--dir", pages.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let adopt = std::fs::read_to_string(pages.join("pathfinder-db-adopt.1")).unwrap();
    assert!(adopt.contains("repair"), "{adopt}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!pages.join("pathfinder-db.1").is_symlink());
    assert_eq!(
        std::fs::read_to_string(pages.join("other.1")).unwrap(),
        "other"
    );
    let written = std::fs::read_dir(&pages).unwrap().count() - 1;
    assert!(
        stdout(&out).contains(&format!("wrote {written} man page(s)")),
        "{}",
        stdout(&out)
    );
}
