//! The audit trail adds up: `retention run` and `sessions purge` killed with
//! SIGKILL at random moments, then finished; the counts in their audit rows
//! sum to exactly the rows that left the live tables. On SQLite and on the
//! real PostgreSQL.

use crate::common::{self, on_both_backends};
use crate::retention::{Rng, ago, apply, count, default_policies, old_messages};

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, Env};
use serde_json::Value as Json;

/// Sum of `field` in the `details` of the audit rows of `action` (and, when
/// given, of one table).
fn audited(env: &Env, action: &str, table: Option<&str>, field: &str) -> u64 {
    env.system_rows(&format!(
        "SELECT details FROM pf_audit_log WHERE action = '{action}'"
    ))
    .iter()
    .map(|r| serde_json::from_str::<Json>(&r[0]).expect("details are JSON"))
    .filter(|d| table.is_none_or(|t| d["table"] == t))
    .map(|d| d[field].as_u64().unwrap_or(0))
    .sum()
}

/// Starts `args` and kills it (SIGKILL) after a random moment; true when it
/// was killed, false when it had finished first.
fn run_and_kill(env: &Env, args: &[&str], rng: &mut Rng, max_ms: u64) -> bool {
    let mut child = env
        .std_cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    std::thread::sleep(Duration::from_millis(20 + rng.below(max_ms)));
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
        true
    } else {
        false
    }
}

/// `n` sessions that expired a week ago, ids `<tag>-<i>`.
fn expired_sessions(env: &Env, tag: &str, n: usize) {
    let expired = ago(7);
    let rows = match env.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) \
             SELECT '{tag}-' || i, 'u-1', 'token-{tag}-' || i, '{expired}' FROM n;"
        ),
        Backend::Postgres(_) => format!(
            "INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) \
             SELECT '{tag}-' || i, 'u-1', 'token-{tag}-' || i, TIMESTAMP '{expired}' FROM generate_series(1, {n}) AS i;"
        ),
    };
    env.system_exec(&format!(
        "INSERT INTO pf_users (id, username, email, password_hash) \
         SELECT 'u-1', 'someone', 's@example.com', 'x' WHERE NOT EXISTS (SELECT 1 FROM pf_users WHERE id = 'u-1');\n{rows}"
    ));
}

fn sessions_left(env: &Env) -> u64 {
    count(env.system_rows("SELECT COUNT(*) FROM pf_user_sessions")) as u64
}

fn killed_purges_are_audited(env: &Env) {
    env.ok(&["init"]);
    const SEEDED: u64 = 30_000;
    expired_sessions(env, "s", SEEDED as usize);
    let mut rng = Rng::new();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while kills < 6 && sessions_left(env) > 0 {
        assert!(Instant::now() < deadline, "only {kills} kills in 60 s");
        if run_and_kill(
            env,
            &["sessions", "purge", "--batch-size", "200"],
            &mut rng,
            300,
        ) {
            kills += 1;
        }
        // After every kill the audit rows account for every deleted session.
        let gone = SEEDED - sessions_left(env);
        assert_eq!(
            audited(env, "sessions.purge", None, "deleted"),
            gone,
            "after {kills} kill(s)"
        );
    }
    let gone_before = SEEDED - sessions_left(env);
    assert!(gone_before > 0, "no kill landed in a purge at work");
    let done = env.json(&["sessions", "purge"]);
    assert_eq!(
        done["deleted"].as_u64(),
        Some(SEEDED - gone_before),
        "{done}"
    );
    assert_eq!(sessions_left(env), 0);
    assert_eq!(audited(env, "sessions.purge", None, "deleted"), SEEDED);
    eprintln!("{kills} kills; {gone_before} sessions purged before the last run");
}
on_both_backends!(
    killed_purges_are_audited,
    sqlite_killed_session_purges_are_audited,
    postgres_killed_session_purges_are_audited,
    "purgekill"
);

fn killed_sweeps_are_audited(env: &Env) {
    let tenants = ["ann", "bob", "cyd"];
    let mut args = vec!["provision"];
    args.extend(tenants);
    env.ok(&args);
    // Chat messages (moved to the archive, tenant tables) and sessions
    // (deleted, a system table).
    let dir = env.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["chat-messages.toml", "sessions.toml"] {
        std::fs::copy(default_policies().join(file), dir.join(file)).unwrap();
    }
    apply(env, &dir);
    const MESSAGES: u64 = 5000;
    const SESSIONS: u64 = 3000;
    for key in tenants {
        old_messages(env, key, "m", MESSAGES as usize);
    }
    expired_sessions(env, "s", SESSIONS as usize);
    let mut rng = Rng::new();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while kills < 8 {
        assert!(Instant::now() < deadline, "only {kills} kills in 60 s");
        if run_and_kill(
            env,
            &[
                "retention",
                "run",
                "--all",
                "--jobs",
                "2",
                "--batch-size",
                "50",
            ],
            &mut rng,
            400,
        ) {
            kills += 1;
        } else {
            break;
        }
    }
    let moved_before: i64 = tenants
        .iter()
        .map(|key| {
            env.tenant_rows(
                key,
                &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages"),
            )
        })
        .map(|rows| MESSAGES as i64 - count(rows))
        .sum();
    assert!(moved_before > 0, "no kill landed in a sweep at work");
    let done = env.json(&["retention", "run", "--all", "--batch-size", "50"]);
    assert_eq!(done["complete"], true, "{done}");
    for key in tenants {
        let table = format!("pf_user_{key}_chat_messages");
        let live = count(env.tenant_rows(key, &format!("SELECT COUNT(*) FROM {table}")));
        let archived =
            count(env.tenant_rows(key, &format!("SELECT COUNT(*) FROM {table}_archive")));
        assert_eq!((live, archived), (0, MESSAGES as i64), "{table}");
        assert_eq!(
            audited(env, "retention.sweep", Some(&table), "archived"),
            MESSAGES,
            "{table}: audited copies"
        );
        assert_eq!(
            audited(env, "retention.sweep", Some(&table), "deleted"),
            MESSAGES,
            "{table}: audited deletions"
        );
    }
    assert_eq!(sessions_left(env), 0);
    assert_eq!(
        audited(env, "retention.sweep", Some("pf_user_sessions"), "deleted"),
        SESSIONS
    );
    eprintln!("{kills} kills; {moved_before} messages moved before the last run");
}
on_both_backends!(
    killed_sweeps_are_audited,
    sqlite_killed_retention_sweeps_are_audited,
    postgres_killed_retention_sweeps_are_audited,
    "sweepkill"
);
