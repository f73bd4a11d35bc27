//! `pathfinder-db render` through the built binary: its output runs as is in
//! psql and sqlite3, bad names are refused with the rule and nothing on stdout,
//! names too long for PostgreSQL point at `--tenant-key`, `--json` is JSON.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::tenant::{TENANT_TABLES, max_key_len};

/// The indexes V1 creates for every tenant (named `pf_user_<key>_*_ix`).
const V1_INDEXES: [&str; 6] = [
    "exp_dates_ix",
    "exp_company_ix",
    "skl_name_ix",
    "skl_category_ix",
    "conv_updated_ix",
    "msg_conv_ix",
];

/// Runs `pathfinder-db <args>` in `dir`; returns (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::pathfinder(dir).args(args).output().expect("run");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

fn render_ok(dir: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(dir, args);
    assert_eq!(code, 0, "render {args:?} failed: {stderr}");
    assert!(!stdout.is_empty());
    stdout
}

/// Whether `program` can be started.
fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Says a test part was skipped, past the harness's capture (like common's SKIPPED).
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {text}");
}

/// Pipes `input` into `program args`, asserting success and an empty stderr.
fn pipe(program: &str, args: &[&str], input: &str) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {stderr}",
        out.status
    );
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Error"),
        "{program}: {stderr}"
    );
}

/// The index names `CREATE INDEX <name>` in a script.
fn created_indexes(script: &str) -> BTreeSet<String> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE INDEX "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn assert_tenant_objects(
    dialect: &str,
    tables: &BTreeSet<String>,
    summary: &str,
    indexes: &BTreeSet<String>,
    script: &str,
) {
    let expected: BTreeSet<String> = TENANT_TABLES
        .iter()
        .map(|t| format!("pf_user_alice_{t}"))
        .collect();
    assert_eq!(tables, &expected, "{dialect}: the 9 tenant tables");
    assert_eq!(summary, "pf_user_alice_career_summary", "{dialect}");
    for ix in V1_INDEXES {
        let name = format!("pf_user_alice_{ix}");
        assert!(indexes.contains(&name), "{dialect}: no index {name}");
    }
    assert_eq!(indexes, &created_indexes(script), "{dialect}: indexes");
}

#[test]
fn postgres_render_runs_in_psql() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    if !on_path("psql") {
        note("psql is not on PATH: render | psql not tested");
        return;
    }
    let dir = common::tempdir();
    let script = render_ok(dir.path(), &["render", "alice", "--dialect", "postgres"]);
    let db = common::PgDatabase::create(&url, "render_cli");
    pipe(
        "psql",
        &["-X", "-q", "-v", "ON_ERROR_STOP=1", &db.url],
        &script,
    );
    let mut client = db.client();
    let rels = common::pg_rows(
        &mut client,
        "SELECT relname, relkind::text FROM pg_class \
         WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'pf\\_user\\_alice\\_%' \
         ORDER BY 1",
    );
    let of_kind = |k: &str| -> BTreeSet<String> {
        rels.iter()
            .filter(|r| r[1] == k)
            .map(|r| r[0].clone())
            .collect()
    };
    let views: Vec<String> = of_kind("m").into_iter().collect();
    assert_eq!(views.len(), 1, "{rels:?}");
    let named_ix: BTreeSet<String> = of_kind("i")
        .into_iter()
        .filter(|n| n.ends_with("_ix"))
        .collect();
    assert_tenant_objects("postgres", &of_kind("r"), &views[0], &named_ix, &script);
}

#[test]
fn sqlite_render_runs_in_sqlite3() {
    if !on_path("sqlite3") {
        note("sqlite3 is not on PATH: render | sqlite3 not tested");
        return;
    }
    let dir = common::tempdir();
    let script = render_ok(dir.path(), &["render", "alice", "--dialect", "sqlite"]);
    let file = dir.path().join("new.db");
    pipe("sqlite3", &["-bail", file.to_str().unwrap()], &script);
    let names = |kind: &str| -> BTreeSet<String> {
        common::sqlite_rows(
            &file,
            &format!(
                "SELECT name FROM sqlite_master WHERE type = '{kind}' \
                 AND name LIKE 'pf\\_user\\_alice\\_%' ESCAPE '\\'"
            ),
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
    };
    let mut tables = names("table");
    // On SQLite the summary is a table.
    assert!(tables.remove("pf_user_alice_career_summary"), "{tables:?}");
    let indexes = names("index");
    assert_tenant_objects(
        "sqlite",
        &tables,
        "pf_user_alice_career_summary",
        &indexes,
        &script,
    );
}

#[test]
fn an_unsafe_name_is_refused_with_the_rule() {
    let dir = common::tempdir();
    for dialect in ["oracle", "postgres", "sqlite"] {
        let (code, stdout, stderr) = run(
            dir.path(),
            &["render", "alice; DROP TABLE pf_users", "--dialect", dialect],
        );
        assert_eq!(code, 2, "{dialect}: {stderr}");
        assert_eq!(stdout, "", "{dialect}: SQL printed for a refused name");
        assert_eq!(stderr.lines().count(), 1, "{dialect}: {stderr}");
        assert!(
            stderr.contains("not a safe identifier") && stderr.contains("';'"),
            "{dialect}: the rule is not named: {stderr}"
        );
    }
}

#[test]
fn a_name_too_long_for_postgres_needs_a_tenant_key() {
    let dir = common::tempdir();
    let long = "abcdefghij_klmnopqrst_uvwxyz12"; // 30 characters
    assert_eq!(long.len(), 30);
    assert!(long.len() > max_key_len(Dialect::Postgres));
    let (code, stdout, stderr) = run(dir.path(), &["render", long, "--dialect", "postgres"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--tenant-key"), "{stderr}");
    assert!(stderr.contains("63"), "{stderr}");

    let script = render_ok(
        dir.path(),
        &[
            "render",
            long,
            "--tenant-key",
            "short",
            "--dialect",
            "postgres",
        ],
    );
    assert!(script.contains("CREATE TABLE pf_user_short_experiences ("));
    assert!(script.contains("pf_user_short_career_summary"));
    assert!(
        !script.contains(&format!("pf_user_{long}")),
        "the long name still names objects"
    );
    // Every CREATE names an object of the key.
    for line in script.lines().filter(|l| l.starts_with("CREATE ")) {
        assert!(line.contains("pf_user_short_"), "{line}");
    }
    // The same name fits Oracle and SQLite as it is.
    for dialect in ["oracle", "sqlite"] {
        let script = render_ok(dir.path(), &["render", long, "--dialect", dialect]);
        assert!(script.contains(&format!("pf_user_{long}_experiences")));
    }
}

#[test]
fn system_schema_for_oracle() {
    let dir = common::tempdir();
    let script = render_ok(dir.path(), &["render", "--system", "--dialect", "oracle"]);
    assert!(script.contains("CREATE TABLE pf_tenants ("), "{script}");
    assert!(script.contains("CREATE TABLE pf_users ("));
    assert!(script.contains("VARCHAR2("), "not Oracle types");
    assert!(!script.contains("pf_user_alice"));
    assert!(!script.contains("IF NOT EXISTS"));
}

#[test]
fn json_output_parses() {
    let dir = common::tempdir();
    for dialect in ["oracle", "postgres", "sqlite"] {
        let out = render_ok(
            dir.path(),
            &["render", "alice", "--dialect", dialect, "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{dialect}: not JSON ({e}): {out}"));
        assert_eq!(v["dialect"], dialect);
        assert_eq!(v["tenant_key"], "alice");
        let migrations = v["migrations"].as_array().expect("migrations array");
        assert!(!migrations.is_empty());
        assert_eq!(migrations[0]["version"], 1);
        assert_eq!(migrations[0]["name"], "V1__initial_schema");
        let statements = migrations[0]["statements"].as_array().unwrap();
        assert!(
            statements.len() >= 10 + 6,
            "{dialect}: {}",
            statements.len()
        );
        assert!(
            statements[0]
                .as_str()
                .unwrap()
                .starts_with("CREATE TABLE pf_user_alice_experiences")
        );
    }
    let out = render_ok(
        dir.path(),
        &["render", "--system", "--dialect", "oracle", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("system JSON");
    assert!(v["tenant_key"].is_null());
    assert!(out.contains("CREATE TABLE pf_tenants"));
}
