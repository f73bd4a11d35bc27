//! `move USER --to NAME`: a verified copy to another member, the registry
//! switched, the source dropped; interrupted by SIGKILL at random moments
//! and re-run, on SQLite member folders and PostgreSQL member databases.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{Backend, Env, PgDatabase, pg_rows, postgres_url};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fleet: the catalog and members m1, m2 (SQLite folders, or PostgreSQL
/// databases, kept alive by the returned handles).
struct Fleet {
    env: Env,
    pg: Vec<PgDatabase>,
}

impl Fleet {
    fn new(server: Option<&str>, hint: &str) -> Fleet {
        let (env, pg) = match server {
            None => (Env::sqlite(), vec![]),
            Some(s) => (
                Env::postgres(s, &format!("{hint}cat")),
                vec![
                    PgDatabase::create(s, &format!("{hint}m1")),
                    PgDatabase::create(s, &format!("{hint}m2")),
                ],
            ),
        };
        env.ok(&["init"]);
        for (i, name) in ["m1", "m2"].iter().enumerate() {
            let url = match env.backend {
                Backend::Sqlite => env.path().join(name).to_str().unwrap().to_string(),
                Backend::Postgres(_) => pg[i].url.clone(),
            };
            env.ok(&["databases", "add", name, &url]);
        }
        Fleet { env, pg }
    }

    fn sqlite_file(&self, member: &str, key: &str) -> PathBuf {
        match member {
            "catalog" => self.env.tenant_dir().join(format!("{key}.db")),
            m => self.env.path().join(m).join(format!("{key}.db")),
        }
    }

    /// How many tables of `key` member `member` holds.
    fn tables_on(&self, member: &str, key: &str) -> i64 {
        match &self.env.backend {
            Backend::Sqlite => {
                let file = self.sqlite_file(member, key);
                if !file.exists() {
                    return 0;
                }
                crate::common::sqlite_rows(&file, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'pf_user_%'")[0][0]
                    .parse()
                    .unwrap()
            }
            Backend::Postgres(_) => {
                let sql = format!(
                    "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'm') AND relname LIKE 'pf\\_user\\_{key}\\_%'"
                );
                let mut client = match member {
                    "catalog" => self.env.pg(),
                    "m1" => self.pg[0].client(),
                    _ => self.pg[1].client(),
                };
                pg_rows(&mut client, &sql)[0][0].parse().unwrap()
            }
        }
    }

    /// Runs statements on `key`'s tables on `member`, as the application
    /// (or a DBA) would.
    fn exec(&self, member: &str, key: &str, sql: &str) {
        match &self.env.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.sqlite_file(member, key))
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Backend::Postgres(_) => self.client(member).batch_execute(sql).unwrap(),
        }
    }

    /// The first value of a query on `key`'s tables on `member`.
    fn value(&self, member: &str, key: &str, sql: &str) -> String {
        match &self.env.backend {
            Backend::Sqlite => {
                crate::common::sqlite_rows(&self.sqlite_file(member, key), sql)[0][0].clone()
            }
            Backend::Postgres(_) => pg_rows(&mut self.client(member), sql)[0][0].clone(),
        }
    }

    fn client(&self, member: &str) -> postgres::Client {
        match member {
            "catalog" => self.env.pg(),
            "m1" => self.pg[0].client(),
            _ => self.pg[1].client(),
        }
    }

    /// (status, claimed_by, member) of `user` in the registry.
    fn registry(&self, user: &str) -> (String, String, String) {
        let r = self.env.system_rows(&format!(
            "SELECT status, COALESCE(claimed_by, ''), COALESCE(database_name, 'catalog') FROM pf_tenants WHERE username = '{user}'"
        ));
        (r[0][0].clone(), r[0][1].clone(), r[0][2].clone())
    }
}

/// Rows in four tables (skills and messages are FK children), `n` messages.
fn seed(env: &Env, key: &str, n: usize) {
    let p = format!("pf_user_{key}_");
    let mut sql = format!(
        "INSERT INTO {p}experiences (id, title, company, start_date, is_current, created_at, updated_at) VALUES ('e1', 'Engineer', 'Acme', '2019-03-01', 0, '2024-01-01 10:00:00.5', '2024-01-01 10:00:00.5');\n\
         INSERT INTO {p}skills (id, experience_id, skill_name, years_of_experience, is_primary, created_at) VALUES ('s1', 'e1', 'Rust', 12.5, 1, '2024-01-01 10:00:00');\n\
         INSERT INTO {p}chat_conversations (id, title, model, total_messages, created_at, updated_at) VALUES ('c1', 'Hi', 'gpt-4', {n}, '2024-01-05 09:00:00', '2024-01-05 09:00:00');\n"
    );
    sql.push_str(&match env.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO {p}chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             SELECT 'm' || i, 'c1', 'user', 'message number ' || i || ' Grüezi', i, '2024-01-05 09:00:01' FROM n;"
        ),
        Backend::Postgres(_) => format!(
            "INSERT INTO {p}chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
             SELECT 'm' || i, 'c1', 'user', 'message number ' || i || ' Grüezi', i, TIMESTAMP '2024-01-05 09:00:01' FROM generate_series(1, {n}) AS i;"
        ),
    });
    env.tenant_exec(key, &sql);
}

fn round_trip(server: Option<&str>, hint: &str) {
    let f = Fleet::new(server, hint);
    let env = &f.env;
    env.ok(&["provision", "alice", "bob", "--database", "catalog"]);
    seed(env, "alice", 300);
    let before = env.path().join("before.json");
    env.ok(&["fingerprint", "alice", "--out", before.to_str().unwrap()]);

    let moved = env.json(&["move", "alice", "--to", "m1"]);
    assert_eq!(moved["to"], "m1", "{moved}");
    assert_eq!(moved["from"], "catalog", "{moved}");
    assert_eq!(moved["rows"], 303, "{moved}");
    assert!(moved["seconds"].as_f64().is_some(), "{moved}");
    assert_eq!(env.json(&["where", "alice"])["database"], "m1");
    env.ok(&[
        "fingerprint",
        "--compare",
        before.to_str().unwrap(),
        "alice",
    ]);
    assert_eq!(f.tables_on("catalog", "alice"), 0, "source objects dropped");
    assert!(f.tables_on("m1", "alice") >= 9);
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m1".into())
    );
    let audited = env.system_rows(
        "SELECT count(*) FROM pf_audit_log WHERE action = 'tenant.move' AND entity_id = 'alice' AND error_message IS NULL",
    );
    assert_eq!(audited[0][0], "1");
    env.ok(&["verify", "alice"]);

    // On again, between members; the text output names rows and seconds.
    let text = env.ok(&["move", "alice", "--to", "m2"]);
    assert!(text.contains("303 rows"), "{text}");
    env.ok(&[
        "fingerprint",
        "--compare",
        before.to_str().unwrap(),
        "alice",
    ]);
    assert_eq!(f.tables_on("m1", "alice"), 0);
    // The tenant is writable where it is now.
    env.ok(&["refresh", "alice"]);

    // Refusals, each a usage error (exit 2) that changes nothing.
    let refused = |args: &[&str], says: &str| {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    // Where it is already: done, nothing to do (a retry after a kill).
    let again = env.ok(&["move", "alice", "--to", "m2"]);
    assert!(
        again.contains("alice is on m2 already: nothing to do"),
        "{again}"
    );
    refused(
        &["move", "alice", "--to", "nowhere"],
        "no member database named nowhere",
    );
    env.ok(&["databases", "drain", "m1"]);
    refused(&["move", "alice", "--to", "m1"], "draining");
    env.ok(&["databases", "open", "m1"]);
    let third = match &env.backend {
        Backend::Sqlite => env.path().join("m3").to_str().unwrap().to_string(),
        Backend::Postgres(_) => f.pg[0].url.replace(hint, "x"), // never reached
    };
    if env.is_sqlite() {
        env.ok(&["databases", "add", "m3", &third, "--capacity", "0"]);
        refused(&["move", "alice", "--to", "m3"], "full");
    }
    refused(&["move", "alice", "--cancel"], "not moving");
    refused(&["move", "nobody", "--to", "m1"], "no tenant named nobody");
    env.system_exec("UPDATE pf_tenants SET status = 'failed' WHERE username = 'bob'");
    refused(&["move", "bob", "--to", "m1"], "not active");
    env.system_exec("UPDATE pf_tenants SET status = 'active' WHERE username = 'bob'");
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m2".into())
    );

    // A move stopped while copying (as a kill leaves it: claimed, a partial
    // copy on the target): writes are refused, deprovision too, and
    // --cancel takes it back to the source with the target clean.
    env.ok(&["move", "bob", "--to", "m1"]);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'bob'",
    );
    match &env.backend {
        Backend::Sqlite => {
            std::fs::copy(f.sqlite_file("m1", "bob"), f.sqlite_file("m2", "bob")).unwrap();
        }
        Backend::Postgres(_) => {
            f.pg[1]
                .client()
                .batch_execute("CREATE TABLE pf_user_bob_experiences (id varchar(36))")
                .unwrap();
        }
    }
    assert!(!env.run(&["refresh", "bob"]).status.success());
    assert!(!env.run(&["deprovision", "bob", "--yes"]).status.success());
    refused(&["move", "bob", "--to", "catalog"], "being moved to m2");
    let cancelled = env.json(&["move", "bob", "--cancel"]);
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(f.tables_on("m2", "bob"), 0, "the partial copy is gone");
    assert!(f.tables_on("m1", "bob") >= 9);
    env.ok(&["verify", "bob"]);

    // A file or tables the registry does not account for are never overwritten.
    match &env.backend {
        Backend::Sqlite => std::fs::write(f.sqlite_file("m2", "bob"), b"not ours").unwrap(),
        Backend::Postgres(_) => f.pg[1]
            .client()
            .batch_execute("CREATE TABLE pf_user_bob_skills (id varchar(36))")
            .unwrap(),
    }
    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not account for"),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    if env.is_sqlite() {
        assert_eq!(
            std::fs::read(f.sqlite_file("m2", "bob")).unwrap(),
            b"not ours"
        );
    }
}

#[test]
fn sqlite_move_copies_verifies_switches_and_drops() {
    round_trip(None, "mvrt");
}

#[test]
fn postgres_move_copies_verifies_switches_and_drops() {
    let Some(server) = postgres_url() else { return };
    round_trip(Some(&server), "mvrt");
}

/// A small random source (no dependency): xorshift seeded from the clock.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("kill test seed {seed}");
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn kills(server: Option<&str>, hint: &str, messages: usize) {
    let f = Fleet::new(server, hint);
    let env = &f.env;
    env.ok(&["provision", "carol", "--database", "catalog"]);
    seed(env, "carol", messages);
    let before = env.path().join("before.json");
    env.ok(&["fingerprint", "carol", "--out", before.to_str().unwrap()]);
    // How long an uninterrupted move takes, to aim the kills.
    let t = Instant::now();
    env.ok(&["move", "carol", "--to", "m1"]);
    let took = t.elapsed();
    eprintln!("an uninterrupted move took {took:?}");
    let mut rng = Rng::new();
    let mut landed: std::collections::BTreeMap<String, usize> = Default::default();
    let mut here = "m1".to_string();
    // Until at least 10 kills landed inside the move (at most 30 rounds).
    for round in 0..30 {
        let inside = landed.get("copying").copied().unwrap_or(0)
            + landed.get("switched").copied().unwrap_or(0);
        if inside >= 10 && round >= 12 {
            break;
        }
        let there = if here == "m1" { "m2" } else { "m1" };
        let mut child = env
            .std_cmd()
            .args(["move", "carol", "--to", there])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Aim: a random moment, or the switch (poll until the registry names the target).
        let aim_switch = round % 3 == 2;
        let deadline = Instant::now() + took * 3;
        if aim_switch {
            while Instant::now() < deadline {
                let (_, claim, _) = f.registry("carol");
                if claim.starts_with("move from") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            let ms = rng.below(took.as_millis() as u64 + 1);
            std::thread::sleep(Duration::from_millis(ms));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (status, claim, member) = f.registry("carol");
        let phase = match (status.as_str(), claim.split(' ').nth(1)) {
            ("moving", Some("to")) => "copying",
            ("moving", Some("from")) => "switched",
            ("active", _) if member == here => "before",
            ("active", _) => "done",
            _ => panic!("after a kill carol is {status} ({claim}) on {member}"),
        };
        *landed.entry(phase.to_string()).or_default() += 1;
        // Exactly one authoritative place: the registry's member holds the tables.
        assert!(f.tables_on(&member, "carol") >= 9, "round {round}: {phase}");
        // A re-run completes (or, once in a while, a cancel takes it back).
        if phase == "copying" && round % 4 == 1 {
            env.ok(&["move", "carol", "--cancel"]);
        } else if phase != "done" {
            env.ok(&["move", "carol", "--to", there]);
        }
        let (status, claim, now) = f.registry("carol");
        assert_eq!(
            (status.as_str(), claim.as_str()),
            ("active", ""),
            "round {round}"
        );
        let other = if now == "m1" { "m2" } else { "m1" };
        assert_eq!(
            f.tables_on(other, "carol"),
            0,
            "round {round}: {other} is clean"
        );
        assert_eq!(f.tables_on("catalog", "carol"), 0);
        env.ok(&[
            "fingerprint",
            "--compare",
            before.to_str().unwrap(),
            "carol",
        ]);
        here = now;
    }
    eprintln!("kills landed: {landed:?}");
    let in_move =
        landed.get("copying").copied().unwrap_or(0) + landed.get("switched").copied().unwrap_or(0);
    assert!(
        in_move >= 10,
        "too few kills landed inside the move: {landed:?}"
    );
    assert!(landed.contains_key("copying"), "{landed:?}");
    assert!(landed.contains_key("switched"), "{landed:?}");
    // A killed move took its place on the target and gave it back.
    env.assert_member_counts_agree();
}

#[test]
fn sqlite_move_survives_sigkill_at_random_moments() {
    kills(None, "mvkill", 30_000);
}

#[test]
fn postgres_move_survives_sigkill_at_random_moments() {
    let Some(server) = postgres_url() else { return };
    kills(Some(&server), "mvkill", 8_000);
}

/// The statements `move` adds to the registry's (its tenant DDL, drop and
/// refresh are the renderer's, checked in oracle_static), as Oracle gets
/// them: parsed with sqlparser's Oracle dialect, binds as `:n`.
#[test]
fn move_registry_statements_parse_as_oracle() {
    use pathfinder_db::catalog::registry::move_step_sql;
    use pathfinder_db::db::bind_placeholders;
    use pathfinder_db::db::dialect::Dialect;
    use sqlparser::dialect::OracleDialect;
    use sqlparser::parser::Parser;
    for sql in [
        move_step_sql(true),
        move_step_sql(false),
        "SELECT user_id FROM pf_tenants WHERE username = ?".to_string(),
    ] {
        let oracle = bind_placeholders(&sql, Dialect::Oracle);
        assert!(!oracle.contains('?'), "{oracle}");
        let parsed = Parser::parse_sql(&OracleDialect {}, &oracle);
        assert!(
            matches!(&parsed, Ok(v) if v.len() == 1),
            "{oracle}: {parsed:?}"
        );
    }
}

/// `databases remove` after the member's tenants were deprovisioned: what a
/// deprovisioned tenant kept there (its archives) keeps the member, named in
/// the refusal; once nothing of theirs is left the member goes, and their
/// registry rows name the catalog rather than a member that is gone.
fn remove_after_deprovision(server: Option<&str>, hint: &str) {
    let f = Fleet::new(server, hint);
    let env = &f.env;
    env.ok(&["provision", "gone", "--database", "m1"]);
    env.ok(&["provision", "kept", "--database", "m1"]);
    env.ok(&["databases", "drain", "m1"]);
    let live = env.run(&["databases", "remove", "m1"]);
    assert_eq!(live.status.code(), Some(2), "{}", stderr(&live));
    assert!(
        stderr(&live).contains("still holds 2 tenant(s)"),
        "{}",
        stderr(&live)
    );

    env.ok(&["deprovision", "gone", "--yes"]);
    env.ok(&["deprovision", "kept", "--archive", "--yes"]);
    assert_eq!(f.tables_on("m1", "gone"), 0);
    assert!(f.tables_on("m1", "kept") > 0, "the archives stay on m1");
    let archives = env.run(&["databases", "remove", "m1"]);
    assert_eq!(archives.status.code(), Some(2), "{}", stderr(&archives));
    let said = stderr(&archives);
    assert!(
        said.contains("1 deprovisioned tenant(s) kept (pf_user_kept_*)"),
        "{said}"
    );
    assert_eq!(f.registry("gone").2, "m1", "a refusal changes nothing");

    // The DBA drops what was kept; then the member can go.
    match &env.backend {
        Backend::Sqlite => std::fs::remove_file(f.sqlite_file("m1", "kept")).unwrap(),
        Backend::Postgres(_) => {
            let mut client = f.pg[0].client();
            let tables = pg_rows(
                &mut client,
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'pf\\_user\\_kept\\_%'",
            );
            for t in tables {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {} CASCADE", t[0]))
                    .unwrap();
            }
        }
    }
    env.ok(&["databases", "remove", "m1"]);
    let members = env.json(&["databases", "list"]);
    assert!(
        members["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "m1"),
        "{members}"
    );
    for user in ["gone", "kept"] {
        assert_eq!(
            f.registry(user),
            ("deprovisioned".into(), String::new(), "catalog".into())
        );
    }
    // Provisioned again, a tenant is placed afresh (catalog and m2 are
    // both empty and unlimited: the first by name), not counting itself.
    env.ok(&["provision", "gone"]);
    assert_eq!(env.json(&["where", "gone"])["database"], "catalog");
    env.ok(&["verify", "gone"]);
}

#[test]
fn sqlite_member_is_removed_once_deprovisioned_tenants_left_nothing() {
    remove_after_deprovision(None, "rmdep");
}

#[test]
fn postgres_member_is_removed_once_deprovisioned_tenants_left_nothing() {
    let Some(server) = crate::common::postgres_url() else {
        return;
    };
    remove_after_deprovision(Some(&server), "rmdep");
}

/// A refused move (exit 2) leaves the registry as it was: no `last_error`.
#[test]
fn sqlite_refused_move_leaves_the_registry_untouched() {
    let f = Fleet::new(None, "mvrf");
    let env = &f.env;
    env.ok(&["provision", "alice", "--database", "m1"]);
    env.ok(&["move", "alice", "--to", "m2"]);
    let last_error = || {
        env.system_rows("SELECT COALESCE(last_error, '-') FROM pf_tenants WHERE username = 'alice'")
            [0][0]
            .clone()
    };
    let typo = "m".repeat(5000);
    for (args, says) in [
        (
            vec!["move", "alice", "--to", typo.as_str()],
            "no member database named",
        ),
        (vec!["move", "alice", "--cancel"], "not moving"),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert_eq!(last_error(), "-", "{says}");
    }
    env.ok(&["databases", "drain", "m1"]);
    assert_eq!(
        env.run(&["move", "alice", "--to", "m1"]).status.code(),
        Some(2)
    );
    assert_eq!(last_error(), "-");
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m2".into())
    );
}

/// A move asked again once it is done (a retry after a kill past its last
/// step) exits 0 with nothing to do.
#[test]
fn sqlite_a_move_asked_again_once_done_is_nothing_to_do() {
    let f = Fleet::new(None, "mvnd");
    let env = &f.env;
    env.ok(&["provision", "alice", "--database", "m1"]);
    env.ok(&["move", "alice", "--to", "m2"]);
    let out = env.run(&["move", "alice", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alice is on m2 already: nothing to do"),
        "{text}"
    );
    let doc = env.json(&["move", "alice", "--to", "m2"]);
    assert_eq!(doc["nothing_to_do"], true, "{doc}");
    assert_eq!(doc["rows"], 0, "{doc}");
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m2".into())
    );
    assert!(f.tables_on("m2", "alice") >= 9);
    // A wrong request is still one.
    let out = env.run(&["move", "alice", "--to", "nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A killed rebalance leaves tenants `moving` (fabricated here exactly as a
/// kill leaves them: the claim and the partial copy, or the switched
/// registry and the source's file). `rebalance` finishes them first: listed
/// by a dry run, bounded by --max-moves (exit 3 while any is left).
#[test]
fn sqlite_rebalance_finishes_moves_a_killed_run_left() {
    let f = Fleet::new(None, "mvrb");
    let env = &f.env;
    env.ok(&["provision", "t1", "--database", "catalog"]);
    seed(env, "t1", 20);
    env.ok(&["move", "t1", "--to", "m1"]);
    env.ok(&["provision", "t2", "--database", "m1"]);
    env.ok(&["databases", "drain", "m1"]);
    // t1 killed while copying to m2.
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 't1'",
    );
    std::fs::copy(f.sqlite_file("m1", "t1"), f.sqlite_file("m2", "t1")).unwrap();
    // t2 killed just after the switch: its file is still on m1.
    env.ok(&["move", "t2", "--to", "m2"]);
    std::fs::copy(f.sqlite_file("m2", "t2"), f.sqlite_file("m1", "t2")).unwrap();
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move from m1' WHERE username = 't2'",
    );

    let plan = env.ok(&["rebalance", "--dry-run"]);
    assert!(
        plan.contains("would finish the interrupted move of t1 from m1 to m2"),
        "{plan}"
    );
    assert!(
        plan.contains("would finish the interrupted move of t2 from m1 to m2"),
        "{plan}"
    );
    assert_eq!(f.registry("t1").0, "moving", "a dry run changes nothing");

    let bounded = env.run(&["rebalance", "--max-moves", "1"]);
    assert_eq!(bounded.status.code(), Some(3), "{}", stderr(&bounded));
    let left = [f.registry("t1").0, f.registry("t2").0];
    assert_eq!(
        left.iter().filter(|s| *s == "moving").count(),
        1,
        "{left:?}"
    );

    let done = env.json(&["rebalance"]);
    assert_eq!(done["balanced"], true, "{done}");
    assert_eq!(done["moves"][0]["resumed"], true, "{done}");
    for t in ["t1", "t2"] {
        assert_eq!(f.registry(t), ("active".into(), "".into(), "m2".into()));
        assert!(!f.sqlite_file("m1", t).exists(), "{t} left on m1");
        assert!(f.tables_on("m2", t) >= 9);
    }
    let rows = crate::common::sqlite_rows(
        &f.sqlite_file("m2", "t1"),
        "SELECT count(*) FROM pf_user_t1_chat_messages",
    );
    assert_eq!(rows[0][0], "20");
    env.ok(&["databases", "remove", "m1"]);

    // A move it cannot finish (its source folder gone) is a failure: exit 3.
    env.ok(&["provision", "t3", "--database", "m2"]);
    env.ok(&[
        "databases",
        "add",
        "m3",
        env.path().join("m3").to_str().unwrap(),
    ]);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m3' WHERE username = 't3'",
    );
    std::fs::rename(env.path().join("m2"), env.path().join("m2_away")).unwrap();
    let out = env.run(&["rebalance"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("t3"), "{}", stderr(&out));
    assert_eq!(f.registry("t3").0, "moving");
}

/// A source member that cannot be reached (its folder gone), or a tenant
/// file that is missing, refuses the move before the tenant is claimed: it
/// stays active, and the error is the one every command gives.
#[test]
fn sqlite_move_from_a_source_that_cannot_be_reached_leaves_the_tenant_active() {
    let f = Fleet::new(None, "mvsr");
    let env = &f.env;
    env.ok(&["provision", "bob", "--database", "m1"]);
    let (m1, away) = (env.path().join("m1"), env.path().join("m1_away"));
    std::fs::rename(&m1, &away).unwrap();
    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("member m1 cannot be reached"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("deprovision"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("moving"), "{}", stderr(&out));
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert!(!f.sqlite_file("m2", "bob").exists());
    std::fs::rename(&away, &m1).unwrap();

    // The member is there but the tenant's file is not.
    let file = f.sqlite_file("m1", "bob");
    let kept = env.path().join("bob.db.kept");
    std::fs::rename(&file, &kept).unwrap();
    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the database file of tenant bob is missing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    std::fs::rename(&kept, &file).unwrap();
    env.ok(&["move", "bob", "--to", "m2"]);
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m2".into()));
}

/// `move --cancel` while the target cannot be reached (its folder gone):
/// the source is authoritative, so the tenant is active there again and the
/// partial copy stays on the target, which doctor lists once it is back and
/// a later move there names. A failed `--to` does not suggest itself.
#[test]
fn sqlite_cancel_with_the_target_down_keeps_the_partial_copy_there() {
    let f = Fleet::new(None, "mvcd");
    let env = &f.env;
    env.ok(&["provision", "alice", "--database", "catalog"]);
    seed(env, "alice", 10);
    env.ok(&["move", "alice", "--to", "m1"]);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'alice'",
    );
    std::fs::copy(f.sqlite_file("m1", "alice"), f.sqlite_file("m2", "alice")).unwrap();
    let (m2, away) = (env.path().join("m2"), env.path().join("m2_away"));
    std::fs::rename(&m2, &away).unwrap();

    let out = env.run(&["move", "alice", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("member m2 cannot be reached"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("move alice --cancel"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("move alice --to m2`"),
        "{}",
        stderr(&out)
    );

    let text = env.ok(&["move", "alice", "--cancel"]);
    assert!(text.contains("partial copy stays on m2"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m1".into())
    );
    let audited = env.system_rows(
        "SELECT count(*) FROM pf_audit_log WHERE action = 'tenant.move.cancel' AND entity_id = 'alice' AND error_message IS NULL",
    );
    assert_eq!(audited[0][0], "1");
    env.ok(&["refresh", "alice"]);

    std::fs::rename(&away, &m2).unwrap();
    let stray = f.sqlite_file("m2", "alice");
    assert!(stray.exists(), "the partial copy is left alone");
    let catalog = env.doctor_check("catalog");
    assert_eq!(catalog["ok"], false, "{catalog}");
    assert!(
        catalog["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(stray.to_str().unwrap()),
        "{catalog}"
    );
    let out = env.run(&["move", "alice", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the file {}", stray.display())),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("remove it"), "{}", stderr(&out));
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m1".into())
    );
    std::fs::remove_file(&stray).unwrap();
    env.ok(&["move", "alice", "--to", "m2"]);
    let rows = crate::common::sqlite_rows(
        &f.sqlite_file("m2", "alice"),
        "SELECT count(*) FROM pf_user_alice_chat_messages",
    );
    assert_eq!(rows[0][0], "10");
}

/// A SQLite move killed inside `VACUUM INTO` leaves the temporary copy and
/// its rollback journal in the target folder (as fabricated here); the
/// cancel removes both, as a re-run does.
#[test]
fn sqlite_cancel_removes_the_temporary_copy_and_its_journal() {
    let f = Fleet::new(None, "mvjn");
    let env = &f.env;
    env.ok(&["provision", "carol", "--database", "m1"]);
    let leftovers = |f: &Fleet| {
        let tmp = format!("{}.moving", f.sqlite_file("m2", "carol").display());
        [tmp.clone(), format!("{tmp}-journal")].map(PathBuf::from)
    };
    for round in ["--cancel", "--to"] {
        env.system_exec(
            "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'carol'",
        );
        for file in leftovers(&f) {
            std::fs::write(&file, b"partial").unwrap();
        }
        match round {
            "--cancel" => env.ok(&["move", "carol", "--cancel"]),
            _ => env.ok(&["move", "carol", "--to", "m2"]),
        };
        for file in leftovers(&f) {
            assert!(!file.exists(), "{round}: {} is left", file.display());
        }
    }
    assert_eq!(
        f.registry("carol"),
        ("active".into(), "".into(), "m2".into())
    );
    env.ok(&["verify", "carol"]);
}

/// Wording: finishing a move switched already says what it did; a cancel
/// that finds the move switched says so plainly; deprovision names the
/// move's target from the claim.
#[test]
fn sqlite_interrupted_move_messages_name_what_was_done() {
    let f = Fleet::new(None, "mvmsg");
    let env = &f.env;
    env.ok(&["provision", "t10", "t12", "--database", "m1"]);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 't10'",
    );
    let out = env.run(&["deprovision", "t10", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pathfinder-db move t10 --to m2`"),
        "{}",
        stderr(&out)
    );
    env.ok(&["move", "t10", "--cancel"]);

    for (args, says) in [
        (
            vec!["move", "t12", "--to", "m2"],
            "finished the move of t12 to m2: dropped what was left on m1",
        ),
        (
            vec!["move", "t12", "--cancel"],
            "t12 had been switched to m1 already, so its move was finished, not cancelled",
        ),
    ] {
        // Killed just after the switch: the source's file is still there.
        let (here, there) = match f.registry("t12").2.as_str() {
            "m1" => ("m1", "m2"),
            _ => ("m2", "m1"),
        };
        env.ok(&["move", "t12", "--to", there]);
        std::fs::copy(f.sqlite_file(there, "t12"), f.sqlite_file(here, "t12")).unwrap();
        env.system_exec(&format!(
            "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move from {here}' WHERE username = 't12'"
        ));
        let text = env.ok(&args);
        assert!(text.contains(says), "{text}");
        assert!(!text.contains("0 rows"), "{text}");
        assert!(!f.sqlite_file(here, "t12").exists());
    }
}

/// `doctor` reports tenants left `moving`, each with its own way forward:
/// the target from the claim while copying, the registry's member once
/// switched, and the cancel.
#[test]
fn sqlite_doctor_reports_tenants_left_moving() {
    let f = Fleet::new(None, "mvdr");
    let env = &f.env;
    env.ok(&["provision", "alice", "bob", "--database", "m1"]);
    assert_eq!(env.doctor_check("tenants")["ok"], true);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'alice'",
    );
    env.ok(&["move", "bob", "--to", "m2"]);
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move from m1' WHERE username = 'bob'",
    );
    let tenants = env.doctor_check("tenants");
    assert_eq!(tenants["ok"], false, "{tenants}");
    let detail = tenants["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("alice (moving)"), "{tenants}");
    assert!(
        detail.contains("unless a run is working on them now"),
        "{tenants}"
    );
    let fix = tenants["fix"].as_str().unwrap_or_default();
    for expected in [
        "`pathfinder-db move alice --to m2`",
        "`pathfinder-db move alice --cancel`",
        "`pathfinder-db move bob --to m2`",
        "`pathfinder-db move bob --cancel`",
    ] {
        assert!(fix.contains(expected), "{expected}: {tenants}");
    }
}

/// PostgreSQL, a member down (its URL a closed port, as a server gone): a
/// move from it is refused with the tenant left active; `--cancel` of a move
/// to it goes through, keeping the partial copy there, and a later move
/// there names every table to drop.
#[test]
fn postgres_member_down_on_either_side_of_a_move() {
    let Some(server) = postgres_url() else { return };
    let f = Fleet::new(Some(&server), "mvdn");
    let env = &f.env;
    env.ok(&["provision", "alice", "bob", "--database", "m1"]);
    let stored = |member: &str| {
        env.system_rows(&format!(
            "SELECT url FROM pf_databases WHERE name = '{member}'"
        ))[0][0]
            .clone()
    };
    let (m1_url, m2_url) = (stored("m1"), stored("m2"));
    let point = |member: &str, url: &str| {
        env.system_exec(&format!(
            "UPDATE pf_databases SET url = '{url}' WHERE name = '{member}'"
        ))
    };
    let nowhere = "postgres://postgres@127.0.0.1:1/nowhere";

    // The source is down: refused before the claim.
    point("m1", nowhere);
    let out = env.run(&["move", "alice", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("m1"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("moving"), "{}", stderr(&out));
    assert_eq!(
        f.registry("alice"),
        ("active".into(), "".into(), "m1".into())
    );
    assert_eq!(f.tables_on("m2", "alice"), 0);
    point("m1", &m1_url);

    // A move to m2 killed while copying, then m2 down: the cancel goes through.
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'bob'",
    );
    f.pg[1]
        .client()
        .batch_execute(
            "CREATE TABLE pf_user_bob_experiences (id varchar(36)); CREATE TABLE pf_user_bob_skills (id varchar(36))",
        )
        .unwrap();
    point("m2", nowhere);
    let text = env.ok(&["move", "bob", "--cancel"]);
    assert!(text.contains("partial copy stays on m2"), "{text}");
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    point("m2", &m2_url);
    assert_eq!(
        f.tables_on("m2", "bob"),
        2,
        "the partial copy is left alone"
    );
    let catalog = env.doctor_check("catalog");
    assert!(
        catalog["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("pf_user_bob_skills (member m2)"),
        "{catalog}"
    );
    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for table in ["pf_user_bob_experiences", "pf_user_bob_skills"] {
        assert!(stderr(&out).contains(table), "{}", stderr(&out));
    }
    f.pg[1]
        .client()
        .batch_execute("DROP TABLE pf_user_bob_experiences; DROP TABLE pf_user_bob_skills")
        .unwrap();
    env.ok(&["move", "bob", "--to", "m2"]);
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m2".into()));
    env.ok(&["verify", "bob"]);
}

/// Rows of bob's seeded tables on `member`, one count per table.
fn bob_rows(f: &Fleet, member: &str) -> Vec<String> {
    [
        "experiences",
        "skills",
        "chat_conversations",
        "chat_messages",
    ]
    .iter()
    .map(|t| {
        f.value(
            member,
            "bob",
            &format!("SELECT count(*) FROM pf_user_bob_{t}"),
        )
    })
    .collect()
}

/// `seed` for a tenant on member `member` (its SQLite file is not in the
/// catalog's folder): provisioned on the catalog, seeded, moved there.
fn provision_seeded(f: &Fleet, user: &str, member: &str, messages: usize) {
    f.env.ok(&["provision", user, "--database", "catalog"]);
    seed(&f.env, user, messages);
    f.env.ok(&["move", user, "--to", member]);
}

/// A tenant whose tables differ from its version (a column added by hand)
/// is refused by `move` before anything is claimed or made on the target
/// (exit 2, active on its source, every row there), and skipped by
/// `rebalance`, which moves the others and, run again, claims nothing.
fn drifted_tenant_is_refused_and_skipped(server: Option<&str>, hint: &str) {
    let f = Fleet::new(server, hint);
    let env = &f.env;
    provision_seeded(&f, "bob", "m1", 12);
    env.ok(&["provision", "carol", "dave", "--database", "m1"]);
    f.exec(
        "m1",
        "bob",
        "ALTER TABLE pf_user_bob_skills ADD COLUMN hobby TEXT",
    );
    let before = bob_rows(&f, "m1");
    assert_eq!(before, ["1", "1", "1", "12"]);
    // Claims audited for bob (its move to m1 made one).
    let claims = || {
        env.system_rows(
            "SELECT count(*) FROM pf_audit_log WHERE entity_id = 'bob' AND action IN ('tenant.move.switch', 'tenant.move.cancel')",
        )[0][0]
            .clone()
    };
    assert_eq!(claims(), "1");

    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    for part in [
        "cannot move bob: its tables differ from version",
        "extra column skills.hobby",
        "`pathfinder-db verify bob` lists the drift",
    ] {
        assert!(said.contains(part), "{part}: {said}");
    }
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(f.tables_on("m2", "bob"), 0, "nothing made on the target");
    if env.is_sqlite() {
        let tmp = format!("{}.moving", f.sqlite_file("m2", "bob").display());
        assert!(!PathBuf::from(tmp).exists());
    }
    assert_eq!(bob_rows(&f, "m1"), before);
    // Refused, not failed: the registry keeps no error.
    assert_eq!(
        env.system_rows("SELECT COALESCE(last_error, '-') FROM pf_tenants WHERE username = 'bob'")
            [0][0],
        "-"
    );

    // rebalance empties m1 into m2, bob excepted, named in its report.
    env.ok(&["databases", "set-capacity", "m2", "10"]);
    env.ok(&["databases", "drain", "m1"]);
    let (code, doc) = env.json_run(&["rebalance"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(crate::common::usernames(&doc["skipped"]), ["bob"], "{doc}");
    assert_eq!(
        crate::common::usernames(&doc["moves"]),
        ["carol", "dave"],
        "{doc}"
    );
    assert_eq!(doc["failed"].as_array().map(Vec::len), Some(0), "{doc}");
    for user in ["carol", "dave"] {
        assert_eq!(f.registry(user), ("active".into(), "".into(), "m2".into()));
    }
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));

    // Run again: bob is skipped again, and nothing was claimed for it.
    let out = env.run(&["rebalance"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("skipped bob: drift"), "{said}");
    assert!(said.contains("`pathfinder-db verify bob`"), "{said}");
    assert!(!said.contains("interrupted"), "{said}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("finish"), "{text}");
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(claims(), "1", "bob was never claimed again");
    assert_eq!(f.tables_on("m2", "bob"), 0);
    assert_eq!(bob_rows(&f, "m1"), before);

    // Repaired, it moves.
    f.exec(
        "m1",
        "bob",
        "ALTER TABLE pf_user_bob_skills DROP COLUMN hobby",
    );
    env.ok(&["verify", "bob"]);
    env.ok(&["move", "bob", "--to", "m2"]);
    assert_eq!(bob_rows(&f, "m2"), before);
}

#[test]
fn sqlite_drifted_tenant_is_refused_by_move_and_skipped_by_rebalance() {
    drifted_tenant_is_refused_and_skipped(None, "mvdrift");
}

#[test]
fn postgres_drifted_tenant_is_refused_by_move_and_skipped_by_rebalance() {
    let Some(server) = postgres_url() else { return };
    drifted_tenant_is_refused_and_skipped(Some(&server), "mvdrift");
}

/// PostgreSQL: a value the copy cannot take (a timestamp 'infinity', which
/// has no date on the way) fails the copy whatever the number of re-runs:
/// the move takes itself back (active on the source, every row there, the
/// partial copy gone), as does a rebalance finishing such a move that an
/// earlier version left `moving`; nothing is left for a later run.
#[test]
fn postgres_a_value_the_copy_cannot_take_takes_the_move_back() {
    let Some(server) = postgres_url() else { return };
    let f = Fleet::new(Some(&server), "mvinf");
    let env = &f.env;
    provision_seeded(&f, "bob", "m1", 12);
    env.ok(&["provision", "carol", "--database", "m1"]);
    f.exec(
        "m1",
        "bob",
        "UPDATE pf_user_bob_chat_messages SET created_at = 'infinity' WHERE id = 'm7'",
    );
    let before = bob_rows(&f, "m1");
    assert_eq!(before, ["1", "1", "1", "12"]);
    let cancels = || {
        env.system_rows(
            "SELECT count(*) FROM pf_audit_log WHERE entity_id = 'bob' AND action = 'tenant.move.cancel' AND error_message IS NULL",
        )[0][0]
            .clone()
    };

    let out = env.run(&["move", "bob", "--to", "m2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("infinity"), "{said}");
    assert!(
        said.contains("the move was taken back: bob stays on m1"),
        "{said}"
    );
    assert!(!said.contains("--cancel"), "{said}");
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(f.tables_on("m2", "bob"), 0, "the partial copy is gone");
    assert_eq!(bob_rows(&f, "m1"), before);
    assert_eq!(cancels(), "1", "the take-back is audited");

    // As an earlier version left it: claimed, a partial copy on m2. The
    // rebalance that finishes interrupted moves takes it back instead.
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m2' WHERE username = 'bob'",
    );
    f.client("m2")
        .batch_execute("CREATE TABLE pf_user_bob_experiences (id varchar(36))")
        .unwrap();
    env.ok(&["databases", "set-capacity", "m2", "10"]);
    env.ok(&["databases", "drain", "m1"]);
    let (code, doc) = env.json_run(&["rebalance"]);
    assert_eq!(code, Some(3), "{doc}");
    let failed = doc["failed"].as_array().cloned().unwrap_or_default();
    assert_eq!(crate::common::usernames(&doc["failed"]), ["bob"], "{doc}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("the move was taken back"),
        "{doc}"
    );
    assert_eq!(
        f.registry("carol"),
        ("active".into(), "".into(), "m2".into())
    );
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(f.tables_on("m2", "bob"), 0);
    assert_eq!(bob_rows(&f, "m1"), before);

    // Nothing is left half-way for the next run to finish.
    let out = env.run(&["rebalance"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m1".into()));
    assert_eq!(bob_rows(&f, "m1"), before);

    // Once the value is a real one, the move goes through with every row.
    f.exec(
        "m1",
        "bob",
        "UPDATE pf_user_bob_chat_messages SET created_at = TIMESTAMP '2024-01-05 09:00:01' WHERE id = 'm7'",
    );
    env.ok(&["move", "bob", "--to", "m2"]);
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m2".into()));
    assert_eq!(bob_rows(&f, "m2"), before);
}

/// PostgreSQL: the target's connection lost in the middle of the copy (its
/// backend terminated, as a server restart does) is not a failure a re-run
/// meets again: the move stays `moving`, names both ways forward, and the
/// same command completes it with every row.
#[test]
fn postgres_a_connection_lost_during_the_copy_leaves_the_move_to_finish() {
    let Some(server) = postgres_url() else { return };
    let f = Fleet::new(Some(&server), "mvlost");
    let env = &f.env;
    provision_seeded(&f, "bob", "m1", 20_000);
    let before = bob_rows(&f, "m1");
    let child = env
        .std_cmd()
        .args(["move", "bob", "--to", "m2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The copy's transaction on m2 (it has written: the tables made there).
    let mut watch = f.client("m2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cut = false;
    while !cut && Instant::now() < deadline {
        cut = !pg_rows(
            &mut watch,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL",
        )
        .is_empty();
    }
    let out = child.wait_with_output().unwrap();
    assert!(cut, "no copy seen on m2");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`pathfinder-db move bob --cancel`"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("taken back"), "{}", stderr(&out));
    assert_eq!(
        f.registry("bob"),
        ("moving".into(), "move to m2".into(), "m1".into())
    );
    assert_eq!(bob_rows(&f, "m1"), before);
    env.ok(&["move", "bob", "--to", "m2"]);
    assert_eq!(f.registry("bob"), ("active".into(), "".into(), "m2".into()));
    assert_eq!(bob_rows(&f, "m2"), before);
}
