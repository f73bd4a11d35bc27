//! Shared helpers for the integration tests: the built binary, temporary
//! directories, and a fresh PostgreSQL database per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::process::{Command, Output};

/// The pathfinder-db binary, run in `dir`, with no PATHFINDER_* variables
/// inherited from the environment.
pub fn pathfinder(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pathfinder-db"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("PATHFINDER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The same binary (kept as a name of its own for the tests that run it in the background).
pub fn pathfinder_std(dir: &Path) -> Command {
    pathfinder(dir)
}

/// What a finished command did, with checks of its exit code that fail the test with its
/// output: `cmd.assert().success()`, `.failure()`, `.code(2)`.
pub struct Assert {
    command: String,
    output: Output,
}

impl Assert {
    fn check(self, ok: bool, expected: &str) -> Self {
        assert!(
            ok,
            "{} exited with {:?}, expected {expected}\nstdout: {}\nstderr: {}",
            self.command,
            self.output.status.code(),
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        );
        self
    }

    pub fn success(self) -> Self {
        let ok = self.output.status.success();
        self.check(ok, "success")
    }

    pub fn failure(self) -> Self {
        let ok = self.output.status.code().is_some_and(|c| c != 0);
        self.check(ok, "a failure")
    }

    pub fn code(self, code: i32) -> Self {
        let ok = self.output.status.code() == Some(code);
        self.check(ok, &format!("exit code {code}"))
    }

    pub fn get_output(&self) -> &Output {
        &self.output
    }
}

/// Runs a command to the end (stdin closed, output captured) for [`Assert`]'s checks.
pub trait AssertExt {
    fn assert(&mut self) -> Assert;
}

impl AssertExt for Command {
    fn assert(&mut self) -> Assert {
        let output = self.output().expect("run pathfinder-db");
        Assert {
            command: format!("{self:?}"),
            output,
        }
    }
}

/// A SQLite database URL inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("pathfinder.db").display())
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The server the PostgreSQL tests use: `PATHFINDER_TEST_POSTGRES_URL`. Without
/// it the test says it was skipped and returns None. CI sets it, so there a
/// PostgreSQL test can never be skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("PATHFINDER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipped("PostgreSQL", "PATHFINDER_TEST_POSTGRES_URL");
            None
        }
    }
}

/// The Oracle server for the Oracle tests: `PATHFINDER_TEST_ORACLE_URL`.
pub fn oracle_url() -> Option<String> {
    match std::env::var("PATHFINDER_TEST_ORACLE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipped("Oracle", "PATHFINDER_TEST_ORACLE_URL");
            None
        }
    }
}

/// Says a test was skipped. Written straight to stderr (not through eprintln!,
/// which the test harness captures) so that `cargo test` shows it.
fn skipped(what: &str, variable: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what} test {test} (set {variable} to run it)"
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database created for one test on the PostgreSQL server, dropped at the end.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub fn create(server_url: &str, hint: &str) -> PgDatabase {
        let name = format!(
            "pf_test_{hint}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin =
            postgres::Client::connect(server_url, postgres::NoTls).unwrap_or_else(|e| {
                panic!("PATHFINDER_TEST_POSTGRES_URL={server_url} is set but unreachable: {e}")
            });
        // Two calls: DROP/CREATE DATABASE cannot share an implicit transaction.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .expect("drop old test database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        PgDatabase {
            url: replace_database(server_url, &name),
            admin_url: server_url.to_string(),
            name,
        }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to test database")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `postgres://u@h:p/db?x` with the database replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Path of the tenant file of `key` next to the SQLite database in `dir`.
pub fn sqlite_tenant_file(dir: &Path, key: &str) -> PathBuf {
    dir.join("pathfinder.db.tenants").join(format!("{key}.db"))
}

/// Runs a query on a SQLite file and returns the rows as strings.
pub fn sqlite_rows(file: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(file).expect("open sqlite");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        Ok((0..n)
            .map(|i| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    String::from_utf8_lossy(t).into_owned()
                }
            })
            .collect())
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// Runs a query on PostgreSQL and returns the rows as strings (via ::text casts
/// done by the caller, or text columns).
pub fn pg_rows(client: &mut postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .expect("query")
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Where a test's database lives and how the test reaches its rows directly.
pub enum Backend {
    Sqlite,
    Postgres(PgDatabase),
}

/// A scratch directory (the commands' working directory) and a database in it
/// (SQLite) or on the test server (PostgreSQL).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub backend: Backend,
}

impl Env {
    pub fn sqlite() -> Env {
        let dir = tempdir();
        let url = sqlite_url(dir.path());
        Env {
            dir,
            url,
            backend: Backend::Sqlite,
        }
    }

    pub fn postgres(server: &str, hint: &str) -> Env {
        let db = PgDatabase::create(server, hint);
        Env {
            dir: tempdir(),
            url: db.url.clone(),
            backend: Backend::Postgres(db),
        }
    }

    pub fn dialect(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.backend, Backend::Sqlite)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The binary, pointed at this database.
    pub fn cmd(&self) -> Command {
        let mut cmd = pathfinder(self.path());
        cmd.arg("--database-url").arg(&self.url);
        cmd
    }

    /// Runs the binary with `args` and returns what it did.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().expect("run pathfinder-db")
    }

    /// Runs the binary, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "pathfinder-db {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the binary with --json, asserts success and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON on stdout")
    }

    /// Runs the binary with --json and parses stdout, whatever the exit
    /// code; returns both.
    pub fn json_run(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: no JSON on stdout ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), doc)
    }

    /// The check named `name` of `doctor --json`, whatever doctor's exit code.
    pub fn doctor_check(&self, name: &str) -> serde_json::Value {
        let (_, doctor) = self.json_run(&["doctor"]);
        doctor["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("doctor has no {name} check: {doctor}"))
    }

    /// `doctor` finds each member's kept count of tenants (what placement
    /// reads) equal to the registry's.
    pub fn assert_member_counts_agree(&self) {
        let check = self.doctor_check("member counts");
        assert_eq!(check["ok"], true, "{check}");
    }

    /// The binary as a std Command (to run in the background), pointed at this database.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = pathfinder_std(self.path());
        cmd.arg("--database-url").arg(&self.url);
        cmd
    }

    pub fn pg(&self) -> postgres::Client {
        match &self.backend {
            Backend::Postgres(db) => db.client(),
            Backend::Sqlite => unreachable!("not a PostgreSQL test"),
        }
    }

    pub fn main_file(&self) -> PathBuf {
        self.path().join("pathfinder.db")
    }

    pub fn tenant_dir(&self) -> PathBuf {
        self.path().join("pathfinder.db.tenants")
    }

    /// Rows of a query on the system tables.
    pub fn system_rows(&self, sql: &str) -> Vec<Vec<String>> {
        match &self.backend {
            Backend::Sqlite => sqlite_rows(&self.main_file(), sql),
            Backend::Postgres(_) => pg_rows(&mut self.pg(), sql),
        }
    }

    /// Rows of a query on a tenant's tables.
    pub fn tenant_rows(&self, key: &str, sql: &str) -> Vec<Vec<String>> {
        match &self.backend {
            Backend::Sqlite => sqlite_rows(&sqlite_tenant_file(self.path(), key), sql),
            Backend::Postgres(_) => pg_rows(&mut self.pg(), sql),
        }
    }

    /// Runs statements on the system tables (to set up a state a crash leaves).
    pub fn system_exec(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.main_file()).expect("open main file");
                conn.execute_batch(sql).expect("system SQL");
            }
            Backend::Postgres(_) => self.pg().batch_execute(sql).expect("system SQL"),
        }
    }

    /// Runs statements on a tenant's tables, as the application would.
    pub fn tenant_exec(&self, key: &str, sql: &str) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(sqlite_tenant_file(self.path(), key))
                    .expect("open tenant file");
                conn.execute_batch(sql).expect("tenant SQL");
            }
            Backend::Postgres(_) => self.pg().batch_execute(sql).expect("tenant SQL"),
        }
    }
}

/// Two tests from one body `fn(&Env)`: `$sqlite` on SQLite, `$postgres` on
/// the PostgreSQL test server (skipped without one; `$hint` names its database).
macro_rules! on_both_backends {
    ($body:ident, $sqlite:ident, $postgres:ident, $hint:literal) => {
        #[test]
        fn $sqlite() {
            $body(&$crate::common::Env::sqlite());
        }
        #[test]
        fn $postgres() {
            let Some(server) = $crate::common::postgres_url() else {
                return;
            };
            $body(&$crate::common::Env::postgres(&server, $hint));
        }
    };
}
pub(crate) use on_both_backends;

/// The `username` of every object in a JSON list, sorted.
pub fn usernames(list: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["username"].as_str().expect("username").to_string())
        .collect();
    names.sort();
    names
}
