//! Tenant version 3: SQLite refuses the rows PostgreSQL refuses.
//!
//! A tenant is provisioned through the binary on SQLite and on the real
//! PostgreSQL (when PATHFINDER_TEST_POSTGRES_URL is set); then every bad row
//! below must be refused on both, as an INSERT and as an UPDATE of a good row,
//! and every good row must be accepted on both.
//!
//! How values reach the database, as an application's would:
//! - SQLite: bind variables of the value's own type (text, integer, real, NULL),
//!   on a connection with `PRAGMA foreign_keys = ON`, as the README asks.
//! - PostgreSQL: each value is an untyped literal ('1.5'), which the server
//!   parses with the column's type, as it does a text-format bind variable (the
//!   postgres crate would convert or refuse values on the client, before the
//!   server could refuse them). A refusal must be a data exception (SQLSTATE
//!   class 22) or an integrity violation (class 23), so a typo in a test
//!   statement can never pass for a refusal.

use crate::common::{self, AssertExt};

use common::{Env, sqlite_tenant_file};

/// A value as the application holds it.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

fn t(s: &str) -> V {
    V::Text(s.to_string())
}

impl V {
    fn to_sqlite(&self) -> rusqlite::types::Value {
        use rusqlite::types::Value;
        match self {
            V::Null => Value::Null,
            V::Int(i) => Value::Integer(*i),
            V::Real(f) => Value::Real(*f),
            V::Text(s) => Value::Text(s.clone()),
        }
    }

    /// An untyped PostgreSQL literal (test constants only).
    fn to_pg_literal(&self) -> String {
        match self {
            V::Null => "NULL".to_string(),
            V::Int(i) => format!("'{i}'"),
            V::Real(f) => format!("'{f}'"),
            V::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// One row of one tenant table (the table without its tenant prefix).
#[derive(Debug, Clone)]
struct Row {
    table: &'static str,
    values: Vec<(&'static str, V)>,
}

impl Row {
    fn id(&self) -> &V {
        &self.values.iter().find(|(c, _)| *c == "id").expect("id").1
    }

    /// The row with `column` set to `value` (added if the row lacks it).
    fn with(mut self, column: &'static str, value: V) -> Row {
        match self.values.iter_mut().find(|(c, _)| *c == column) {
            Some(slot) => slot.1 = value,
            None => self.values.push((column, value)),
        }
        self
    }
}

/// A valid row of `table` with only the columns it needs; `id` is its key.
/// Chat messages belong to conversation `conv-1`, which `setup` creates.
fn minimal(table: &'static str, id: &str) -> Row {
    let values = match table {
        "experiences" => vec![
            ("id", t(id)),
            ("title", t("Engineer")),
            ("company", t("Acme")),
            ("start_date", t("2020-01-02")),
        ],
        "skills" => vec![("id", t(id)), ("skill_name", t("Rust"))],
        "profile_summary" | "quick_summary" | "chat_conversations" => vec![("id", t(id))],
        "chat_messages" => vec![
            ("id", t(id)),
            ("conversation_id", t("conv-1")),
            ("role", t("user")),
            ("content", t("Hello")),
        ],
        "career_analytics" => vec![
            ("id", t(id)),
            ("metric_date", t("2020-01-02")),
            ("metric_type", t(&format!("type-{id}"))),
        ],
        "skills_progression" => vec![
            ("id", t(id)),
            ("skill_name", t("Rust")),
            ("assessment_date", t("2020-01-02")),
        ],
        "pert_responses" => vec![
            ("id", t(id)),
            ("competency_id", t("c-1")),
            ("situation", t("S")),
            ("task", t("T")),
            ("action", t("A")),
            ("result", t("R")),
        ],
        other => panic!("no minimal row for {other}"),
    };
    Row { table, values }
}

/// A row one column of which every dialect must refuse, and what SQLite's
/// message says (the trigger's `<table>.<column>: ...`, or SQLite's own
/// NOT NULL and CHECK messages).
struct Bad {
    row: Row,
    column: &'static str,
    sqlite_says: &'static str,
}

fn bad(table: &'static str, column: &'static str, value: V, sqlite_says: &'static str) -> Bad {
    Bad {
        row: minimal(table, "bad").with(column, value),
        column,
        sqlite_says,
    }
}

fn bad_rows() -> Vec<Bad> {
    let date = "a date as YYYY-MM-DD";
    let timestamp = "a timestamp as YYYY-MM-DD HH:MM:SS[.fff]";
    vec![
        // Dates: malformed, not a date, a day the month does not have.
        bad("experiences", "start_date", t("2020-13-45"), date),
        bad("experiences", "start_date", t("not a date"), date),
        bad("experiences", "end_date", t("2021-02-30"), date),
        bad("skills", "last_used", t("2019-02-29"), date),
        bad("career_analytics", "metric_date", t("2020-04-31"), date),
        bad("skills_progression", "assessment_date", t("yes"), date),
        // Timestamps: an hour, a minute or a day out of range, junk after the seconds.
        bad(
            "chat_conversations",
            "last_message_at",
            t("2020-01-02 25:00:00"),
            timestamp,
        ),
        bad(
            "chat_messages",
            "created_at",
            t("2020-01-02 10:61:00"),
            timestamp,
        ),
        bad(
            "pert_responses",
            "submitted_at",
            t("2021-02-30 10:00:00"),
            timestamp,
        ),
        bad(
            "experiences",
            "updated_at",
            t("2020-01-02 10:00:00 o'clock"),
            timestamp,
        ),
        bad(
            "chat_conversations",
            "deleted_at",
            t("tomorrow-ish"),
            timestamp,
        ),
        bad(
            "skills",
            "created_at",
            t("2020-01-02 10:00:00.5x"),
            timestamp,
        ),
        // Numbers: text in numeric columns, a fraction in whole-number columns,
        // more digits before the point than NUMERIC(p,s) allows.
        bad("career_analytics", "metric_value", t("abc"), "a number"),
        bad("skills", "years_of_experience", t("abc"), "a number"),
        bad(
            "quick_summary",
            "total_roles",
            V::Real(1.5),
            "a whole number",
        ),
        bad(
            "chat_messages",
            "tokens_used",
            V::Real(1.5),
            "a whole number",
        ),
        bad("pert_responses", "word_count", t("many"), "a whole number"),
        bad(
            "profile_summary",
            "total_years_experience",
            V::Int(100),
            "NUMERIC(3,1)",
        ),
        bad(
            "quick_summary",
            "years_experience",
            V::Real(99.96),
            "NUMERIC(3,1)",
        ),
        bad(
            "skills_progression",
            "growth_rate",
            V::Real(-1000.0),
            "NUMERIC(5,2)",
        ),
        bad(
            "career_analytics",
            "metric_value",
            V::Real(1e8),
            "NUMERIC(10,2)",
        ),
        // Text over its VARCHAR limit (characters, not bytes).
        bad(
            "experiences",
            "title",
            t(&"x".repeat(256)),
            "at most 255 characters",
        ),
        bad(
            "quick_summary",
            "career_objective",
            t(&"é".repeat(501)),
            "at most 500 characters",
        ),
        bad(
            "pert_responses",
            "status",
            t(&"s".repeat(21)),
            "at most 20 characters",
        ),
        bad(
            "chat_messages",
            "id",
            t(&"7".repeat(37)),
            "at most 36 characters",
        ),
        // Outside a CHECK list; NULL in a NOT NULL column.
        bad("chat_messages", "role", t("admin"), "msg_role_ck"),
        bad("skills", "is_primary", V::Int(2), "skl_primary_ck"),
        bad(
            "experiences",
            "company",
            V::Null,
            "NOT NULL constraint failed",
        ),
        bad(
            "career_analytics",
            "metric_date",
            V::Null,
            "NOT NULL constraint failed",
        ),
    ]
}

/// Rows both dialects accept: every column type at its limits, NULLs where
/// allowed, fractional timestamps, a `T` separator, a bare date in a
/// timestamp column, numbers given as text, and the defaults.
fn good_rows() -> Vec<Row> {
    vec![
        minimal("experiences", "e-min"),
        minimal("experiences", "e-full")
            .with("title", t(&"x".repeat(255)))
            .with("company", t(&"é".repeat(255)))
            .with("location", V::Null)
            .with("start_date", t("2020-02-29"))
            .with("end_date", t("2024-12-31"))
            .with("is_current", V::Int(1))
            .with("description", t(&"long text ".repeat(1000)))
            .with("industry", t("Software"))
            .with("created_at", t("2020-01-02 10:11:12.123"))
            .with("updated_at", t("2020-01-02T10:11:12")),
        minimal("skills", "s-1")
            .with("experience_id", t("e-full"))
            .with("years_of_experience", t("3.5"))
            .with("last_used", t("2024-02-29"))
            .with("is_primary", V::Int(0)),
        minimal("skills", "s-2")
            .with("years_of_experience", V::Real(-99.9))
            .with("last_used", V::Null),
        minimal("profile_summary", "p-1")
            .with("total_years_experience", V::Real(99.9))
            .with("last_updated", t("2020-01-02")),
        minimal("quick_summary", "q-1")
            .with("total_roles", V::Int(99999))
            .with("years_experience", V::Int(12))
            .with("career_objective", t(&"o".repeat(500))),
        minimal("chat_conversations", "conv-2")
            .with("total_messages", V::Int(0))
            .with("last_message_at", t("2020-01-02 10:11:12.123456"))
            .with("deleted_at", t("2020-01-02")),
        minimal("chat_messages", "m-1")
            .with("role", t("assistant"))
            .with("tokens_used", V::Int(9_999_999_999))
            .with("created_at", t("2020-12-31 23:59:59.999")),
        minimal("chat_messages", "m-2").with("deleted_at", V::Null),
        minimal("career_analytics", "a-1")
            .with("metric_value", V::Real(99_999_999.99))
            .with("created_at", t("1999-01-01 00:00:00")),
        minimal("career_analytics", "a-2").with("metric_value", t("-12.5")),
        minimal("skills_progression", "g-1")
            .with("proficiency_score", V::Int(999))
            .with("growth_rate", V::Real(999.99))
            .with("market_demand_score", V::Int(0)),
        minimal("pert_responses", "r-1")
            .with("experience_id", t("e-full"))
            .with("word_count", V::Int(350))
            .with("status", t("submitted"))
            .with("submitted_at", t("2020-01-02T10:11:12.5")),
    ]
}

/// Why the database refused a statement.
#[derive(Debug)]
struct Refusal {
    /// PostgreSQL's SQLSTATE.
    code: Option<String>,
    message: String,
}

/// A tenant's tables, reached the way an application reaches them.
enum Tenant {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Tenant {
    /// Provisions `key` at `version` (the latest when None) and connects.
    fn provision(env: &Env, key: &str, version: Option<&str>) -> Tenant {
        let mut cmd = env.cmd();
        cmd.arg("provision").arg(key);
        if let Some(v) = version {
            cmd.args(["--to", v]);
        }
        cmd.assert().success();
        Tenant::connect(env, key)
    }

    fn connect(env: &Env, key: &str) -> Tenant {
        if env.is_sqlite() {
            let conn = rusqlite::Connection::open(sqlite_tenant_file(env.path(), key))
                .expect("open the tenant file");
            conn.execute_batch("PRAGMA foreign_keys = ON")
                .expect("foreign keys on");
            Tenant::Sqlite(conn)
        } else {
            Tenant::Postgres(env.pg())
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Tenant::Sqlite(_) => "sqlite",
            Tenant::Postgres(_) => "postgres",
        }
    }

    /// Runs `sql` with `?N` placeholders bound to `values`.
    fn run(&mut self, sql: &str, values: &[&V]) -> Result<(), Refusal> {
        match self {
            Tenant::Sqlite(conn) => {
                let params: Vec<rusqlite::types::Value> =
                    values.iter().map(|v| v.to_sqlite()).collect();
                conn.execute(sql, rusqlite::params_from_iter(params))
                    .map(|_| ())
                    .map_err(|e| Refusal {
                        code: None,
                        message: e.to_string(),
                    })
            }
            Tenant::Postgres(client) => {
                // Highest numbers first, so ?1 does not eat the start of ?10.
                let mut sql = sql.to_string();
                for (i, v) in values.iter().enumerate().rev() {
                    sql = sql.replace(&format!("?{}", i + 1), &v.to_pg_literal());
                }
                client.batch_execute(&sql).map_err(|e| Refusal {
                    code: e.code().map(|c| c.code().to_string()),
                    message: e
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string()),
                })
            }
        }
    }

    fn insert(&mut self, key: &str, row: &Row) -> Result<(), Refusal> {
        let columns: Vec<&str> = row.values.iter().map(|(c, _)| *c).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO pf_user_{key}_{} ({}) VALUES ({})",
            row.table,
            columns.join(", "),
            placeholders.join(", ")
        );
        let values: Vec<&V> = row.values.iter().map(|(_, v)| v).collect();
        self.run(&sql, &values)
    }

    fn update(
        &mut self,
        key: &str,
        table: &str,
        id: &V,
        column: &str,
        value: &V,
    ) -> Result<(), Refusal> {
        let sql = format!("UPDATE pf_user_{key}_{table} SET {column} = ?1 WHERE id = ?2");
        self.run(&sql, &[value, id])
    }

    fn count(&mut self, key: &str, table: &str, id: &V) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM pf_user_{key}_{table} WHERE id = ?1");
        match (self, id) {
            (Tenant::Sqlite(conn), V::Text(id)) => {
                conn.query_row(&sql, [id], |r| r.get(0)).expect("count")
            }
            (Tenant::Postgres(client), V::Text(id)) => client
                .query_one(&sql.replace("?1", "$1"), &[id])
                .expect("count")
                .get(0),
            (_, id) => panic!("ids are text, not {id:?}"),
        }
    }

    /// One value, as text (NULL as None), of the row `id` of `table`.
    fn text(&mut self, key: &str, table: &str, id: &str, column: &str) -> Option<String> {
        let sql = format!("SELECT CAST({column} AS TEXT) FROM pf_user_{key}_{table} WHERE id = ?1");
        match self {
            Tenant::Sqlite(conn) => conn.query_row(&sql, [id], |r| r.get(0)).expect("select"),
            Tenant::Postgres(client) => client
                .query_one(&sql.replace("?1", "$1"), &[&id])
                .expect("select")
                .get(0),
        }
    }

    /// Asserts that the database refused for a reason of data, not of SQL.
    fn assert_refused(&self, result: Result<(), Refusal>, what: &str, sqlite_says: &str) {
        let refusal = match result {
            Ok(()) => panic!("{}: accepted {what}", self.name()),
            Err(r) => r,
        };
        match self {
            Tenant::Sqlite(_) => assert!(
                refusal.message.contains(sqlite_says),
                "sqlite: {what}: refused with {:?}, expected it to say {sqlite_says:?}",
                refusal.message
            ),
            Tenant::Postgres(_) => {
                let code = refusal.code.clone().unwrap_or_default();
                assert!(
                    code.starts_with("22") || code.starts_with("23"),
                    "postgres: {what}: refused for another reason: {refusal:?}"
                );
            }
        }
    }
}

/// The rows the bad ones lean on: the conversation of every chat message.
fn setup(tenant: &mut Tenant, key: &str) {
    tenant
        .insert(key, &minimal("chat_conversations", "conv-1"))
        .expect("the conversation of the chat messages");
}

/// Every bad row is refused as an INSERT, and as an UPDATE of a good row.
fn refuses_bad_rows(env: &Env) {
    let key = "vic";
    let mut tenant = Tenant::provision(env, key, None);
    setup(&mut tenant, key);
    for (i, case) in bad_rows().into_iter().enumerate() {
        let Bad {
            row,
            column,
            sqlite_says,
        } = case;
        let value = &row.values.iter().find(|(c, _)| *c == column).unwrap().1;
        let what = format!("{}.{column} = {value:?}", row.table);
        let inserted = tenant.insert(key, &row);
        tenant.assert_refused(inserted, &what, sqlite_says);
        assert_eq!(tenant.count(key, row.table, row.id()), 0, "{what}: stored");

        let good = minimal(row.table, &format!("good-{i}"));
        tenant
            .insert(key, &good)
            .unwrap_or_else(|e| panic!("{}: good row of {what}: {e:?}", tenant.name()));
        let updated = tenant.update(key, row.table, good.id(), column, value);
        tenant.assert_refused(updated, &format!("UPDATE {what}"), sqlite_says);
    }
}

/// Every good row is accepted, and the defaults fill what it leaves out.
fn accepts_good_rows(env: &Env) {
    let key = "gus";
    let mut tenant = Tenant::provision(env, key, None);
    setup(&mut tenant, key);
    for row in good_rows() {
        tenant
            .insert(key, &row)
            .unwrap_or_else(|e| panic!("{}: refused {row:?}: {e:?}", tenant.name()));
        assert_eq!(tenant.count(key, row.table, row.id()), 1, "{row:?}");
    }
    // The defaults passed the checks too.
    assert!(
        tenant
            .text(key, "experiences", "e-min", "created_at")
            .is_some()
    );
    assert_eq!(
        tenant.text(key, "chat_conversations", "conv-1", "model"),
        Some("gpt-4".to_string())
    );
    assert_eq!(
        tenant.text(key, "pert_responses", "r-1", "status"),
        Some("submitted".to_string())
    );
    // An UPDATE to good values is accepted, and so is one that leaves a
    // column as it is.
    for (table, id, column, value) in [
        ("experiences", "e-min", "end_date", t("2021-06-30")),
        ("experiences", "e-min", "end_date", V::Null),
        (
            "chat_messages",
            "m-1",
            "deleted_at",
            t("2021-01-01T00:00:00.000001"),
        ),
        ("quick_summary", "q-1", "years_experience", t("7.25")),
        ("skills_progression", "g-1", "proficiency_score", t("42")),
        ("skills_progression", "g-1", "skill_name", t("Rust")),
    ] {
        tenant
            .update(key, table, &t(id), column, &value)
            .unwrap_or_else(|e| panic!("{}: UPDATE {table}.{column}: {e:?}", tenant.name()));
    }
}

fn postgres_env(hint: &str) -> Option<Env> {
    let server = common::postgres_url()?;
    Some(Env::postgres(&server, hint))
}

#[test]
fn sqlite_refuses_what_postgres_refuses() {
    refuses_bad_rows(&Env::sqlite());
}

#[test]
fn postgres_refuses_the_same_rows() {
    if let Some(env) = postgres_env("checks_bad") {
        refuses_bad_rows(&env);
    }
}

#[test]
fn sqlite_accepts_the_good_rows() {
    accepts_good_rows(&Env::sqlite());
}

#[test]
fn postgres_accepts_the_same_good_rows() {
    if let Some(env) = postgres_env("checks_good") {
        accepts_good_rows(&env);
    }
}

/// SQLite stores text as given, so it takes dates and timestamps only in the
/// ISO shapes that sort and compute correctly; PostgreSQL converts other
/// spellings (the '01/02/2020' becomes 2020-01-02). Whole numbers keep
/// to their declared digits, as Oracle's NUMBER(n) does (PostgreSQL's SMALLINT
/// would take 1000).
#[test]
fn sqlite_takes_only_values_it_can_store_as_the_other_dialects_mean_them() {
    let env = Env::sqlite();
    let key = "ida";
    let mut tenant = Tenant::provision(&env, key, None);
    for (row, says) in [
        (
            minimal("experiences", "x").with("start_date", t("01/02/2020")),
            "experiences.start_date: a date as YYYY-MM-DD",
        ),
        (
            minimal("experiences", "x").with("start_date", t("2020-01-02 10:00:00")),
            "experiences.start_date",
        ),
        (
            minimal("experiences", "x").with("created_at", t("2020-01-02 10:00:00+02:00")),
            "experiences.created_at",
        ),
        (
            minimal("experiences", "x").with("created_at", t("2020-01-02 10:00")),
            "experiences.created_at",
        ),
        (
            // PostgreSQL takes this one, as 2020-01-02 00:00:00.
            minimal("experiences", "x").with("created_at", t("2020-01-02X10:00:00")),
            "experiences.created_at",
        ),
        (
            minimal("skills_progression", "x").with("proficiency_score", V::Int(1000)),
            "skills_progression.proficiency_score: a whole number of at most 3 digits",
        ),
        (
            minimal("skills", "x").with("last_used", V::Int(20200102)),
            "skills.last_used",
        ),
    ] {
        let inserted = tenant.insert(key, &row);
        tenant.assert_refused(inserted, &format!("{row:?}"), says);
    }
}

/// A tenant provisioned at V2 migrates to V3 with `migrate --all` (on
/// PostgreSQL V3 has no statement, and is still recorded), and then refuses a
/// bad date. On SQLite a row stored before V3 stays, and can still be updated
/// in its other columns and fixed.
fn migrates_from_v2(env: &Env) {
    let key = "joe";
    let mut tenant = Tenant::provision(env, key, Some("2"));
    let legacy_date = if env.is_sqlite() {
        "01/02/2020" // V2 on SQLite takes it: the bug this version fixes
    } else {
        "2020-01-02"
    };
    let legacy = minimal("experiences", "legacy").with("start_date", t(legacy_date));
    tenant.insert(key, &legacy).expect("V2 takes the row");

    env.cmd()
        .args(["migrate", "--all", "--to", "3"])
        .assert()
        .success();
    let history = env.tenant_rows(
        key,
        &format!("SELECT version FROM pf_user_{key}_schema_history ORDER BY version"),
    );
    assert_eq!(history, vec![vec!["1"], vec!["2"], vec!["3"]]);
    let registry = env.system_rows("SELECT schema_version FROM pf_tenants WHERE username = 'joe'");
    assert_eq!(registry, vec![vec!["3"]]);

    let mut tenant = Tenant::connect(env, key);
    let bad = minimal("experiences", "new").with("start_date", t("2020-13-45"));
    let inserted = tenant.insert(key, &bad);
    tenant.assert_refused(
        inserted,
        "a bad date after V3",
        "experiences.start_date: a date as YYYY-MM-DD",
    );
    let id = t("legacy");
    tenant
        .update(key, "experiences", &id, "title", &t("Lead"))
        .expect("an old row's other columns can be updated");
    let refused = tenant.update(key, "experiences", &id, "start_date", &t("2020-02-30"));
    tenant.assert_refused(refused, "a bad date by UPDATE", "experiences.start_date");
    tenant
        .update(key, "experiences", &id, "start_date", &t("2020-02-01"))
        .expect("an old row can be fixed");
    assert_eq!(
        tenant.text(key, "experiences", "legacy", "start_date"),
        Some("2020-02-01".to_string())
    );
}

#[test]
fn sqlite_tenant_at_v2_migrates_to_v3() {
    migrates_from_v2(&Env::sqlite());
}

#[test]
fn postgres_tenant_at_v2_migrates_to_v3() {
    if let Some(env) = postgres_env("checks_v2") {
        migrates_from_v2(&env);
    }
}

/// What the README tells an application: attach the tenant file to a
/// connection on the main file and turn foreign keys on, and then foreign keys,
/// ON DELETE CASCADE and the value checks all hold.
#[test]
fn sqlite_attached_tenant_enforces_keys_and_checks() {
    let env = Env::sqlite();
    let key = "kim";
    Tenant::provision(&env, key, None);
    let conn = rusqlite::Connection::open(env.main_file()).expect("open the main file");
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
        .unwrap();
    conn.execute(
        "ATTACH DATABASE ?1 AS kim",
        [sqlite_tenant_file(env.path(), key).to_str().unwrap()],
    )
    .expect("attach");
    conn.execute_batch(
        "INSERT INTO kim.pf_user_kim_chat_conversations (id) VALUES ('c');
         INSERT INTO kim.pf_user_kim_chat_messages (id, conversation_id, role, content)
             VALUES ('m', 'c', 'user', 'hi');",
    )
    .expect("good rows");
    let orphan = conn
        .execute(
            "INSERT INTO kim.pf_user_kim_chat_messages (id, conversation_id, role, content)
             VALUES ('o', 'missing', 'user', 'hi')",
            [],
        )
        .unwrap_err();
    assert!(
        orphan.to_string().contains("FOREIGN KEY"),
        "{orphan}: a message without its conversation"
    );
    let bad = conn
        .execute(
            "INSERT INTO kim.pf_user_kim_experiences (id, title, company, start_date)
             VALUES ('e', 't', 'c', ?1)",
            ["31.12.2020"],
        )
        .unwrap_err();
    assert!(bad.to_string().contains("experiences.start_date"), "{bad}");
    conn.execute(
        "DELETE FROM kim.pf_user_kim_chat_conversations WHERE id = 'c'",
        [],
    )
    .unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM kim.pf_user_kim_chat_messages",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "ON DELETE CASCADE removed the message");
}
