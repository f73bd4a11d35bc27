//! Hardening, second round: an import killed at any moment never leaves an
//! active tenant without its rows; a deprovisioning whose last commit failed
//! knows its own export on the re-run; errors that name the cause (a full
//! disk, a missing tenant file, an `infinity` date, a username read as an
//! option); `stats` counts the user's rows only. Through the built binary,
//! on SQLite and on the real PostgreSQL.

use crate::common;
use crate::common::on_both_backends;

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::hardening::{audit_count, status_of, stderr, stdout};
use common::{Backend, Env};

fn rows_of(env: &Env, key: &str, table: &str) -> i64 {
    env.tenant_rows(key, &format!("SELECT COUNT(*) FROM pf_user_{key}_{table}"))[0][0]
        .parse()
        .unwrap()
}

/// `n` experiences with a skill each, made by the database itself.
fn seed_many(env: &Env, key: &str, n: usize) {
    let sql = match env.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
             INSERT INTO pf_user_{key}_experiences (id, title, company, start_date) \
             SELECT 'e' || i, 'Engineer ' || i, 'Acme', '2020-01-01' FROM s;\n\
             INSERT INTO pf_user_{key}_skills (id, experience_id, skill_name) \
             SELECT 's' || substr(id, 2), id, 'Rust' FROM pf_user_{key}_experiences;"
        ),
        Backend::Postgres(_) => format!(
            "INSERT INTO pf_user_{key}_experiences (id, title, company, start_date) \
             SELECT 'e' || i, 'Engineer ' || i, 'Acme', DATE '2020-01-01' FROM generate_series(1, {n}) i;\n\
             INSERT INTO pf_user_{key}_skills (id, experience_id, skill_name) \
             SELECT 's' || substr(id, 2), id, 'Rust' FROM pf_user_{key}_experiences;"
        ),
    };
    env.tenant_exec(key, &sql);
}

/// A small pseudo-random sequence (no dependency for it).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------
// 1. An import killed with SIGKILL: never active without its rows; the same
//    import finishes it, `import --cancel` removes it, one audit row.

/// What the commands say about a tenant an import left `importing`.
fn importing_is_shown(env: &Env, user: &str) {
    let tenants = env.json(&["tenants"]);
    let entry = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["username"] == user)
        .unwrap_or_else(|| panic!("{user} listed: {tenants}"));
    assert_eq!(entry["status"], "importing", "{tenants}");
    let status = env.json(&["status"]);
    assert!(
        status["by_version"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["status"] == "importing"),
        "{status}"
    );
    let doctor = env.run(&["doctor"]);
    assert_ne!(doctor.status.code(), Some(0));
    let said = stdout(&doctor) + &stderr(&doctor);
    assert!(
        said.contains(&format!("{user} (importing")) && said.contains("import --cancel"),
        "{said}"
    );
    let verify = env.run(&["verify", user]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains("being imported"),
        "{}",
        stdout(&verify)
    );
    // Neither provision nor migrate make it active without its rows.
    let provision = env.run(&["provision", user]);
    assert_ne!(provision.status.code(), Some(0));
    assert!(
        stderr(&provision).contains("being imported"),
        "{}",
        stderr(&provision)
    );
    env.run(&["migrate", "--all"]);
    assert_eq!(status_of(env, user), "importing");
    // Its way out is the import's own (`deprovision --cancel` would make it active).
    let deprovision = env.run(&["deprovision", user, "--yes"]);
    assert_eq!(
        deprovision.status.code(),
        Some(2),
        "{}",
        stderr(&deprovision)
    );
    assert!(
        stderr(&deprovision).contains("import --cancel"),
        "{}",
        stderr(&deprovision)
    );
}

fn killed_import_is_never_active(env: &Env) {
    const ROWS: usize = 6000;
    env.ok(&["provision", "alice"]);
    seed_many(env, "alice", ROWS);
    let file = env.path().join("alice.jsonl");
    let file_arg = file.to_str().unwrap().to_string();
    env.ok(&["export", "alice", "--out", &file_arg]);
    let expected = (ROWS * 2) as i64;

    // How long a whole import takes here: the kills land inside that span.
    let started = Instant::now();
    env.ok(&["import", &file_arg, "--as", "carol"]);
    let span = started.elapsed().as_millis() as u64;
    env.ok(&["deprovision", "carol", "--yes"]);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut kills, mut importing_seen, mut cancelled) = (0, 0, 0);
    let mut finished = 1;
    let deadline = Instant::now() + Duration::from_secs(150);
    // carol was imported and deprovisioned once: each import takes her
    // registry row from `deprovisioned`.
    while kills < 8 || (env.is_sqlite() && importing_seen < 2) {
        assert!(
            Instant::now() < deadline,
            "{kills} kills, {importing_seen} left importing"
        );
        let mut child = env
            .std_cmd()
            .args(["import", &file_arg, "--as", "carol"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start import");
        std::thread::sleep(Duration::from_millis(span / 5 + rng.below(span * 4 / 5)));
        let done = child.try_wait().unwrap().is_some();
        if !done {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        match status_of(env, "carol").as_str() {
            "active" => {
                // Active means every row is in.
                assert_eq!(rows_of(env, "carol", "experiences"), ROWS as i64);
                assert_eq!(rows_of(env, "carol", "skills"), ROWS as i64);
                finished += 1;
                env.ok(&["deprovision", "carol", "--yes"]);
            }
            "importing" => {
                importing_seen += 1;
                importing_is_shown(env, "carol");
                if importing_seen % 2 == 1 {
                    // Cancelled: nothing of it is left; the registry row only
                    // as it was before the import (deprovisioned, or none).
                    let out = env.ok(&["import", "--cancel", "--as", "carol"]);
                    assert!(out.contains("removed"), "{out}");
                    assert_eq!(status_of(env, "carol"), "deprovisioned");
                    if env.is_sqlite() {
                        assert!(!common::sqlite_tenant_file(env.path(), "carol").exists());
                    }
                    cancelled += 1;
                } else {
                    // The same import finishes it.
                    let out = env.ok(&["import", &file_arg, "--as", "carol"]);
                    assert!(out.contains(&format!("imported {expected} rows")), "{out}");
                    assert_eq!(rows_of(env, "carol", "experiences"), ROWS as i64);
                    finished += 1;
                    env.ok(&["deprovision", "carol", "--yes"]);
                }
            }
            // Killed before registering, or a deprovisioned row from earlier.
            "" | "deprovisioned" => {}
            other => panic!("carol is {other} after a kill"),
        }
    }
    // Once more to the end: the audit has one success per completed import.
    let out = env.ok(&["import", &file_arg, "--as", "carol"]);
    assert!(out.contains(&format!("imported {expected} rows")), "{out}");
    finished += 1;
    assert_eq!(status_of(env, "carol"), "active");
    assert_eq!(audit_count(env, "tenant.import", "carol", "200"), finished);
    // Nothing half-made is left for the others: verify and doctor are clean.
    env.ok(&["verify", "--all"]);
    env.ok(&["doctor"]);
    eprintln!(
        "{kills} kills, {importing_seen} left importing ({cancelled} cancelled), {finished} imports completed"
    );
}
on_both_backends!(
    killed_import_is_never_active,
    killed_import_is_never_active_sqlite,
    killed_import_is_never_active_postgres,
    "impkill"
);

/// The state a kill leaves on SQLite, made exactly: the rows committed in
/// the tenant's file, the registry still `importing` (a trigger refuses every
/// change of the row, so neither the last step nor the take-back happen). The
/// same import finishes it, another file is refused, `--cancel` removes it.
#[test]
fn import_interrupted_before_its_last_commit_sqlite() {
    let env = Env::sqlite();
    env.ok(&["provision", "alice", "bob"]);
    seed_many(&env, "alice", 20);
    let file = env.path().join("alice.jsonl");
    let file_arg = file.to_str().unwrap();
    env.ok(&["export", "alice", "--out", file_arg]);
    let other = env.path().join("bob.jsonl");
    env.ok(&["export", "bob", "--out", other.to_str().unwrap()]);
    let stick = "CREATE TRIGGER stick BEFORE UPDATE ON pf_tenants \
         WHEN OLD.status = 'importing' AND NEW.status <> 'importing' \
         BEGIN SELECT RAISE(ABORT, 'simulated crash'); END;";
    for user in ["dora", "erin"] {
        env.system_exec(stick);
        let out = env.run(&["import", file_arg, "--as", user]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("import --cancel --as"),
            "{}",
            stderr(&out)
        );
        env.system_exec("DROP TRIGGER stick;");
        assert_eq!(status_of(&env, user), "importing");
        assert_eq!(rows_of(&env, user, "experiences"), 20);
        importing_is_shown(&env, user);
        // Another file is not this import.
        let out = env.run(&["import", other.to_str().unwrap(), "--as", user]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("another file"), "{}", stderr(&out));
    }
    // The same import finishes dora, audited once.
    let out = env.ok(&["import", file_arg, "--as", "dora"]);
    assert!(out.contains("imported 40 rows into dora"), "{out}");
    assert_eq!(status_of(&env, "dora"), "active");
    assert_eq!(rows_of(&env, "dora", "experiences"), 20);
    assert_eq!(audit_count(&env, "tenant.import", "dora", "200"), 1);
    // --cancel removes erin: no row, no file.
    env.ok(&["import", "--cancel", file_arg, "--as", "erin"]);
    assert_eq!(status_of(&env, "erin"), "");
    assert!(!common::sqlite_tenant_file(env.path(), "erin").exists());
    let again = env.run(&["import", "--cancel", "--as", "erin"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let active = env.run(&["import", "--cancel", "--as", "dora"]);
    assert_eq!(active.status.code(), Some(2), "{}", stderr(&active));
    assert!(
        stderr(&active).contains("not importing"),
        "{}",
        stderr(&active)
    );
    env.ok(&["verify", "--all"]);
    env.ok(&["doctor"]);
}

// ---------------------------------------------------------------------------
// 6. A PostgreSQL `deprovision --export` whose last commit fails: the re-run
//    knows its own file and finishes without --force; a foreign file is
//    still refused.

#[test]
fn deprovision_export_after_a_failed_commit_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "depcommit");
    env.ok(&["provision", "alice", "bob"]);
    seed_many(&env, "alice", 5);
    // The commit fails: a deferred trigger checked at COMMIT.
    env.system_exec(
        "CREATE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'simulated failure at commit'; END $$;\n\
         CREATE CONSTRAINT TRIGGER test_fail_commit AFTER UPDATE ON pf_tenants \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'deprovisioned') \
         EXECUTE FUNCTION test_fail_commit();",
    );
    let file = env.path().join("alice-final.jsonl");
    let file_arg = file.to_str().unwrap();
    let out = env.run(&["deprovision", "alice", "--export", file_arg, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("simulated failure"),
        "{}",
        stderr(&out)
    );
    // A complete, verified export; the tenant still active with its rows.
    env.ok(&["export", "--verify", file_arg]);
    assert_eq!(status_of(&env, "alice"), "active");
    assert_eq!(rows_of(&env, "alice", "experiences"), 5);
    // The application writes meanwhile: the re-run must export that too.
    env.tenant_exec(
        "alice",
        "INSERT INTO pf_user_alice_experiences (id, title, company, start_date) \
         VALUES ('late-1', 'Late', 'Acme', DATE '2024-01-01');",
    );
    env.system_exec("DROP TRIGGER test_fail_commit ON pf_tenants;");

    let out = env.run(&["deprovision", "alice", "--export", file_arg, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(status_of(&env, "alice"), "deprovisioned");
    let verified = env.ok(&["export", "--verify", file_arg]);
    assert!(verified.contains("intact"), "{verified}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"late-1\""), "the late row is in the export");
    assert_eq!(audit_count(&env, "tenant.deprovision", "alice", "200"), 1);

    // A file this deprovisioning did not write is still refused: an export
    // by the export command, and a file of anything else.
    let foreign = env.path().join("bob.jsonl");
    let foreign_arg = foreign.to_str().unwrap();
    env.ok(&["export", "bob", "--out", foreign_arg]);
    let before = std::fs::read(&foreign).unwrap();
    let out = env.run(&["deprovision", "bob", "--export", foreign_arg, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    std::fs::write(&foreign, b"not an export\n").unwrap();
    let out = env.run(&["deprovision", "bob", "--export", foreign_arg, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not an export\n");
    assert_ne!(before.len(), 0);
    assert_eq!(status_of(&env, "bob"), "active");
}

// ---------------------------------------------------------------------------
// 7. Errors that name the cause.

/// A migrate on SQLite that runs out of disk: a real full disk (a 3 MB tmpfs
/// in a user and mount namespace of its own, so no root is needed).
#[test]
fn full_disk_during_migrate_is_named_sqlite() {
    let probe = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: full_disk_during_migrate_is_named_sqlite (needs `unshare -rm` and tmpfs mounts)"
        );
        return;
    }
    let work = common::tempdir();
    let disk = work.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let bin = env!("CARGO_BIN_EXE_pathfinder-db");
    let script = r#"
set -u
mount -t tmpfs -o size=3m tmpfs "$DISK" || exit 90
export PATHFINDER_DATABASE_URL="sqlite://$DISK/pathfinder.db"
"$BIN" provision alice --to 1 >/dev/null || exit 91
# Fill what is left of the disk.
dd if=/dev/zero of="$DISK/filler" bs=4096 2>/dev/null
"$BIN" migrate --all
echo "exit=$?" >&2
"#;
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("DISK", &disk)
        .env("BIN", bin)
        .env_remove("PATHFINDER_DATABASE_URL")
        .current_dir(work.path())
        .output()
        .expect("run unshare");
    let err = stderr(&out);
    assert!(!err.contains("exit=0"), "{err}");
    assert!(err.contains("disk full"), "{err}");
    assert!(err.contains(disk.to_str().unwrap()), "{err}");
    assert!(!err.contains("disk I/O error"), "{err}");
}

#[test]
fn verify_names_a_missing_tenant_file_sqlite() {
    let env = Env::sqlite();
    env.ok(&["provision", "alice", "bob"]);
    let file = common::sqlite_tenant_file(env.path(), "alice");
    std::fs::remove_file(&file).unwrap();
    let out = env.run(&["verify", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("alice")).collect();
    assert_eq!(lines.len(), 1, "one problem, not a list of drift: {text}");
    assert!(lines[0].contains("missing"), "{text}");
    assert!(lines[0].contains(file.to_str().unwrap()), "{text}");
    assert!(lines[0].contains("deprovision alice --yes"), "{text}");
    env.ok(&["verify", "bob"]);
}

#[test]
fn export_names_an_infinity_date_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "infinity");
    env.ok(&["provision", "alice"]);
    env.tenant_exec(
        "alice",
        "INSERT INTO pf_user_alice_experiences (id, title, company, start_date) VALUES \
         ('e1', 'A', 'Acme', DATE '2020-01-01'), ('e2', 'B', 'Beta', 'infinity');",
    );
    let file = env.path().join("alice.jsonl");
    let out = env.run(&["export", "alice", "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        "pf_user_alice_experiences",
        "start_date",
        "\"e2\"",
        "infinity",
    ] {
        assert!(err.contains(part), "{part} in: {err}");
    }
    assert!(!file.exists());
}

#[test]
fn a_username_starting_with_a_dash_is_explained() {
    let env = Env::sqlite();
    for (name, args) in [
        ("-bob", vec!["provision", "-bob"]),
        // -j is --jobs: "-jane" is --jobs ane.
        ("-jane", vec!["provision", "-jane"]),
        ("-x", vec!["deprovision", "--yes", "-xy"]),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        let arg = args.last().unwrap();
        assert!(
            err.contains(&format!("-- {arg}")),
            "{name}: how to pass it: {err}"
        );
        assert!(
            !err.contains("tip: to pass '"),
            "clap's own tip is replaced: {err}"
        );
    }
    // A real unknown option gets no such hint.
    let out = env.run(&["provision", "--bogus", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stderr(&out).contains("was read as options"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------
// 13. `stats` counts the user's rows, not the schema history or the career
//     summary.

fn stats_count_user_rows_only(env: &Env) {
    env.ok(&["provision", "alice"]);
    let doc = env.json(&["stats", "alice", "--exact"]);
    let alice = &doc["tenants"][0];
    assert_eq!(alice["rows"], 0, "an empty user has no rows: {doc}");
    assert!(alice["bookkeeping_rows"].as_i64().unwrap() > 0, "{doc}");
    assert_eq!(doc["totals"]["rows"], 0, "{doc}");
    seed_many(env, "alice", 3);
    let doc = env.json(&["stats", "alice", "--exact"]);
    assert_eq!(doc["tenants"][0]["rows"], 6, "{doc}");
    let table = env.ok(&["stats", "alice", "--exact"]);
    assert!(
        table.contains("schema_history (bookkeeping, not counted)"),
        "{table}"
    );
}
on_both_backends!(
    stats_count_user_rows_only,
    stats_count_user_rows_only_sqlite,
    stats_count_user_rows_only_postgres,
    "statsrows"
);
