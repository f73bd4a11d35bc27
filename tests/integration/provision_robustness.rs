//! Provisioning under stress, through the built binary: killed with SIGKILL
//! halfway and re-run, two processes provisioning the same user at once, an
//! unreachable server, wrong credentials, a read-only SQLite file, invalid
//! names, and a thousand tenants on PostgreSQL.

use crate::common::{self, AssertExt};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, pathfinder, pathfinder_std, pg_rows, sqlite_rows, sqlite_tenant_file};
use serde_json::Value as Json;

use pathfinder_db::schema::tenant::TENANT_TABLES;

impl Env {
    /// Username -> status, straight from the registry table.
    fn registry(&self) -> BTreeMap<String, String> {
        self.system_rows("SELECT username, status FROM pf_tenants")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    }

    /// `tenants --json`: username -> status, with a check on the version.
    fn tenants_json(&self) -> BTreeMap<String, String> {
        let out = self
            .cmd()
            .args(["tenants", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let list: Json = serde_json::from_slice(&out).expect("tenants --json");
        list["tenants"]
            .as_array()
            .expect("an array")
            .iter()
            .map(|t| {
                let status = t["status"].as_str().unwrap().to_string();
                if status == "active" {
                    assert!(t["schema_version"].as_i64().unwrap() >= 1, "{t}");
                }
                (t["username"].as_str().unwrap().to_string(), status)
            })
            .collect()
    }

    /// Tenant key -> the names of its tables and views in the catalog. One
    /// catalog query on PostgreSQL; one per tenant file on SQLite.
    fn relations_by_tenant(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        match &self.backend {
            Backend::Sqlite => {
                let Ok(entries) = std::fs::read_dir(self.tenant_dir()) else {
                    return out;
                };
                for entry in entries {
                    let path = entry.expect("dir entry").path();
                    let Some(key) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".db"))
                    else {
                        continue;
                    };
                    let names = sqlite_rows(
                        &path,
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
                    );
                    let set = out.entry(key.to_string()).or_default();
                    let prefix = format!("pf_user_{key}_");
                    for r in names {
                        if let Some(rest) = r[0].strip_prefix(&prefix) {
                            set.insert(rest.to_string());
                        }
                    }
                }
            }
            Backend::Postgres(_) => {
                let rows = pg_rows(
                    &mut self.pg(),
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm', 'v', 'p') \
                     AND c.relname LIKE 'pf\\_user\\_%'",
                );
                for r in rows {
                    // Our test names are user_<n>; other pf_user_* relations
                    // (the system table pf_user_sessions) are not tenants.
                    let Some((n, table)) = r[0]
                        .strip_prefix("pf_user_user_")
                        .and_then(|rest| rest.split_once('_'))
                    else {
                        continue;
                    };
                    out.entry(format!("user_{n}"))
                        .or_default()
                        .insert(table.to_string());
                }
            }
        }
        out
    }
}

/// The objects a finished tenant has: its nine tables and career_summary.
fn complete_objects() -> BTreeSet<String> {
    TENANT_TABLES
        .iter()
        .copied()
        .chain(["career_summary"])
        .map(String::from)
        .collect()
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("user_{i}")).collect()
}

fn write_names(env: &Env, names: &[String]) -> PathBuf {
    let file = env.path().join("users.txt");
    std::fs::write(&file, names.join("\n") + "\n").expect("write users.txt");
    file
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts stderr is exactly one line starting with `error:`.
fn assert_one_error_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
}

// ---------------------------------------------------------------------------
// (a) killed with SIGKILL halfway, then run again

fn wait_until(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if done() {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the provisioning run ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn killed_and_rerun(env: &Env) {
    const N: usize = 200;
    let users = names(N);
    let file = write_names(env, &users);
    env.cmd().arg("init").assert().success();

    let mut child = env
        .std_cmd()
        .args(["provision", "--jobs", "2", "--from-file"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn provision");
    // Kill once some tenants are done, long before all of them are.
    match &env.backend {
        Backend::Sqlite => {
            let dir = env.tenant_dir();
            wait_until(&mut child, "20 tenant files exist", || {
                std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) >= 20
            });
        }
        Backend::Postgres(_) => {
            let mut client = env.pg();
            wait_until(&mut child, "20 tenants are active", || {
                let rows = pg_rows(
                    &mut client,
                    "SELECT COUNT(*) FROM pf_tenants WHERE status = 'active'",
                );
                rows[0][0].parse::<usize>().unwrap() >= 20
            });
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the run was killed, not finished");

    let registry = env.registry();
    let active = registry.values().filter(|s| *s == "active").count();
    assert!(
        (1..N).contains(&active),
        "killed halfway: {active} of {N} active"
    );
    let relations = env.relations_by_tenant();
    for (user, status) in &registry {
        if status == "active" {
            assert!(
                relations
                    .get(user)
                    .is_some_and(|r| complete_objects().is_subset(r)),
                "active {user} is complete: {:?}",
                relations.get(user)
            );
        }
    }
    if env.is_sqlite() {
        // A tenant file is written in one transaction: all of it or nothing.
        for (user, rels) in &relations {
            assert!(
                rels.is_empty() || complete_objects().is_subset(rels),
                "{user}'s file is half written: {rels:?}"
            );
        }
    } else {
        // PostgreSQL provisions a tenant in one transaction: a tenant is either
        // registered and complete, or absent, never half there.
        for user in &users {
            let rels = relations.get(user);
            match registry.get(user) {
                Some(_) => assert!(
                    rels.is_some_and(|r| complete_objects().is_subset(r)),
                    "registered {user} is complete: {rels:?}"
                ),
                None => assert!(rels.is_none(), "unregistered {user} has objects: {rels:?}"),
            }
        }
    }

    // The same command again finishes the job.
    env.cmd()
        .args(["provision", "--jobs", "2", "--from-file"])
        .arg(&file)
        .assert()
        .success();
    let listed = env.tenants_json();
    assert_eq!(listed.len(), N, "tenants --json lists every user");
    assert!(
        listed.values().all(|s| s == "active"),
        "all active: {listed:?}"
    );
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        users.iter().cloned().collect::<BTreeSet<_>>()
    );
    let relations = env.relations_by_tenant();
    assert_eq!(
        relations.len(),
        N,
        "one set of objects per user, nothing else"
    );
    for user in &users {
        let have = relations.get(user).cloned().unwrap_or_default();
        assert!(
            complete_objects().is_subset(&have),
            "{user} has its nine tables and career_summary: {have:?}"
        );
    }
    let audit = env.system_rows(
        "SELECT entity_id, COUNT(*) FROM pf_audit_log \
         WHERE action = 'tenant.provision' AND response_status = 200 GROUP BY entity_id",
    );
    for row in &audit {
        assert_eq!(
            row[1], "1",
            "at most one provision audit row per tenant: {row:?}"
        );
    }
    if !env.is_sqlite() {
        // The audit row commits with the tenant, so every tenant has exactly one.
        assert_eq!(audit.len(), N, "one provision audit row per tenant");
    }
}

#[test]
fn sigkill_then_rerun_sqlite() {
    killed_and_rerun(&Env::sqlite());
}

#[test]
fn sigkill_then_rerun_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    killed_and_rerun(&Env::postgres(&server, "sigkill"));
}

// ---------------------------------------------------------------------------
// (b) two processes provisioning the same user at the same time

fn race_same_user(env: &Env, users: &[&str]) {
    for user in users {
        let spawn = || {
            env.std_cmd()
                .args(["provision", user])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn provision")
        };
        let (a, b) = (spawn(), spawn());
        let outputs: Vec<Output> = [a, b]
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        for out in &outputs {
            assert!(
                out.status.success(),
                "both runs succeed: {:?} stdout={:?} stderr={:?}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        let said: Vec<String> = outputs.iter().map(|o| text(&o.stdout)).collect();
        let created = said
            .iter()
            .filter(|s| s.contains(&format!("provisioned {user}")))
            .count();
        let existed = said
            .iter()
            .filter(|s| {
                s.contains("already exists")
                    || s.contains(&format!("{user} was provisioned by another run meanwhile"))
            })
            .count();
        assert_eq!(
            (created, existed),
            (1, 1),
            "one run provisions {user}, the other finds it: {said:?}"
        );
        let rows = env.system_rows(&format!(
            "SELECT status FROM pf_tenants WHERE username = '{user}'"
        ));
        assert_eq!(rows, vec![vec!["active".to_string()]], "one registry row");
        let audit = env.system_rows(&format!(
            "SELECT response_status FROM pf_audit_log \
             WHERE action = 'tenant.provision' AND entity_id = '{user}'"
        ));
        assert_eq!(
            audit,
            vec![vec!["200".to_string()]],
            "one successful provision audit row for {user}"
        );
    }
    let relations = env.relations_by_tenant();
    for user in users {
        assert!(
            relations
                .get(*user)
                .is_some_and(|r| complete_objects().is_subset(r)),
            "{user} is complete: {:?}",
            relations.get(*user)
        );
    }
}

#[test]
fn concurrent_same_user_sqlite() {
    // No `init` first: the two processes also race to create the system schema.
    race_same_user(&Env::sqlite(), &["user_1", "user_2", "user_3"]);
}

#[test]
fn concurrent_same_user_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "race");
    env.cmd().arg("init").assert().success();
    race_same_user(&env, &["user_1", "user_2", "user_3"]);
}

/// Two first runs on a fresh database also race to create the system schema.
#[test]
fn concurrent_first_runs_on_fresh_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    // Several fresh databases: the race is likely, not certain, on each one.
    for i in 0..3 {
        let env = Env::postgres(&server, &format!("fresh_race{i}"));
        race_same_user(&env, &["user_1"]);
    }
}

// ---------------------------------------------------------------------------
// (c) unreachable server, (d) wrong credentials

#[test]
fn unreachable_server_is_one_line_exit_1() {
    let dir = common::tempdir();
    for args in [&["provision", "alice"][..], &["tenants"][..]] {
        let started = Instant::now();
        let out = pathfinder(dir.path())
            .args(["--database-url", "postgres://postgres@127.0.0.1:1/x"])
            .args(args)
            .assert()
            .code(1);
        assert_one_error_line(&text(&out.get_output().stderr));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a refused connection fails fast"
        );
    }
    // A password in the URL never shows up in the error.
    let out = pathfinder(dir.path())
        .args([
            "--database-url",
            "postgres://postgres:secret123@127.0.0.1:1/x",
            "provision",
            "alice",
        ])
        .assert()
        .code(1);
    let err = text(&out.get_output().stderr);
    assert_one_error_line(&err);
    assert!(
        !err.contains("secret123"),
        "the password is not printed: {err}"
    );
    assert!(
        !dir.path().join("pathfinder.db").exists(),
        "no SQLite file appears"
    );
}

#[test]
fn wrong_credentials_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "badrole");
    for password in [None, Some("hunter2pw")] {
        let mut url = url::Url::parse(&env.url).expect("a URL");
        url.set_username("no_such_role").unwrap();
        url.set_password(password).unwrap();
        let out = pathfinder(env.path())
            .args(["--database-url", url.as_str(), "provision", "alice"])
            .assert()
            .code(1);
        let err = text(&out.get_output().stderr);
        assert_one_error_line(&err);
        assert!(err.contains("no_such_role"), "names the role: {err}");
        assert!(
            !err.contains("hunter2pw"),
            "the password is not printed: {err}"
        );
    }
    let tables = pg_rows(
        &mut env.pg(),
        "SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'pf\\_%'",
    );
    assert_eq!(tables, vec![vec!["0".to_string()]], "nothing was created");
}

// ---------------------------------------------------------------------------
// (e) a read-only SQLite database

#[test]
fn read_only_sqlite_is_one_line_exit_1() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let dir = common::tempdir();
    let url = common::sqlite_url(dir.path());
    let main = dir.path().join("pathfinder.db");
    pathfinder(dir.path())
        .args(["--database-url", &url, "provision", "alice"])
        .assert()
        .success();
    let registry = || {
        sqlite_rows(
            &main,
            "SELECT username, status, schema_version FROM pf_tenants",
        )
    };
    let before = registry();
    assert_eq!(before.len(), 1);

    // Read-only file and directories (no journal can be created either).
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let tenants = dir.path().join("pathfinder.db.tenants");
    set_mode(&main, 0o444);
    set_mode(&tenants, 0o555);
    set_mode(dir.path(), 0o555);
    // root ignores permission bits: then run the binary as `nobody`, for whom
    // they hold, so the tool meets a real read-only database.
    let bypasses_permissions = std::fs::OpenOptions::new().write(true).open(&main).is_ok();
    let mut cmd = pathfinder_std(dir.path());
    cmd.args(["--database-url", &url, "provision", "bob"]);
    if bypasses_permissions {
        cmd.uid(65534).gid(65534);
    }
    let result = cmd.output();
    set_mode(dir.path(), 0o755);
    set_mode(&tenants, 0o755);
    set_mode(&main, 0o644);
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            // E.g. the binary is not reachable for `nobody`.
            eprintln!("SKIPPED: read-only test: cannot run the binary as nobody: {e}");
            return;
        }
    };
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1: {err}");
    assert_one_error_line(&err);
    assert!(
        err.contains("read-only") || err.contains("readonly"),
        "{err}"
    );
    assert_eq!(registry(), before, "the registry is unchanged");
    assert!(!sqlite_tenant_file(dir.path(), "bob").exists());
}

// ---------------------------------------------------------------------------
// (f) invalid names

#[test]
fn invalid_names_exit_2_and_create_nothing() {
    let dir = common::tempdir();
    for bad in [
        "Bad.Name",
        "john__doe",
        "trailing_",
        "1abc",
        "Alice",
        "bob-smith",
    ] {
        let out = pathfinder(dir.path())
            .args(["provision", bad])
            .assert()
            .code(2);
        let err = text(&out.get_output().stderr);
        assert!(err.contains("not a safe identifier"), "{bad}: {err}");
        assert!(err.contains(bad), "the message names {bad}: {err}");
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        entries.is_empty(),
        "nothing was created, not even pathfinder.db"
    );

    // One bad line among good ones: the whole file is refused.
    let env = Env::sqlite();
    env.cmd().arg("init").assert().success();
    let file = env.path().join("users.txt");
    std::fs::write(&file, "good_one\ngood_two\nBad.Name\ngood_three\n").unwrap();
    let out = env
        .cmd()
        .args(["provision", "--from-file"])
        .arg(&file)
        .assert()
        .code(2);
    // Named by its line, not quoted (the file may be a secret read by mistake).
    assert!(text(&out.get_output().stderr).contains("line 3"));
    assert!(env.registry().is_empty(), "nobody was provisioned");
    assert!(!env.tenant_dir().exists(), "no tenant files");
}

// ---------------------------------------------------------------------------
// (g) a thousand tenants on PostgreSQL

#[test]
fn thousand_tenants_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    const N: usize = 1000;
    let env = Env::postgres(&server, "thousand");
    let users = names(N);
    let file = write_names(&env, &users);
    env.cmd()
        .args(["provision", "--jobs", "2", "--from-file"])
        .arg(&file)
        .assert()
        .success();
    let listed = env.tenants_json();
    assert_eq!(listed.len(), N);
    assert!(listed.values().all(|s| s == "active"));
    let matviews = pg_rows(
        &mut env.pg(),
        "SELECT COUNT(*) FROM pg_matviews WHERE matviewname LIKE 'pf\\_user\\_%\\_career\\_summary'",
    );
    assert_eq!(
        matviews,
        vec![vec![N.to_string()]],
        "one career_summary each"
    );
}

/// Two processes that start on a database file that does not exist yet both succeed: the
/// one that loses the race to turn the new file to WAL (where SQLite answers "busy" at once
/// rather than wait) tries again instead of failing with "database is locked". Many rounds,
/// since the two must meet in that moment (about 1 round in 60 did before).
#[test]
fn two_first_runs_on_a_new_file_sqlite() {
    for round in 0..60 {
        let env = Env::sqlite();
        let spawn = || {
            env.std_cmd()
                .args(["-q", "provision", "alice"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn provision")
        };
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {:?}: {}",
                out.status,
                text(&out.stderr)
            );
        }
    }
}
