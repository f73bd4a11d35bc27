//! The audit trail adds up: `retention run` and `sessions purge` killed with
//! SIGKILL at random moments, then finished; the counts in their audit rows
//! sum to exactly the rows that left the live tables. On SQLite and on the
//! real PostgreSQL.

use crate::common::{self, on_both_backends};
use crate::concurrent_runs::wait_for_killed_sessions;
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
pub(crate) fn run_and_kill(env: &Env, args: &[&str], rng: &mut Rng, max_ms: u64) -> bool {
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

/// The sessions left and the sessions the purge rows say were deleted, read
/// in one statement (one snapshot): a batch a killed client had sent its
/// COMMIT for may still commit on the server between two reads.
fn purge_state(env: &Env) -> (u64, u64) {
    let rows = env.system_rows(
        "SELECT 'left', CAST(COUNT(*) AS VARCHAR(20)) FROM pf_user_sessions \
         UNION ALL SELECT 'audit', details FROM pf_audit_log WHERE action = 'sessions.purge'",
    );
    let left = rows.iter().find(|r| r[0] == "left").expect("count")[1]
        .parse()
        .expect("a count");
    let audited = rows
        .iter()
        .filter(|r| r[0] == "audit")
        .map(|r| {
            serde_json::from_str::<Json>(&r[1]).expect("details are JSON")["deleted"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    (left, audited)
}

fn killed_purges_are_audited(env: &Env) {
    env.ok(&["init"]);
    const BATCH: u64 = 10_000;
    let mut seeded = 0;
    let mut rng = Rng::new();
    let (mut kills, mut landed, mut window) = (0, 0, 300);
    let deadline = Instant::now() + Duration::from_secs(90);
    // Until several kills landed in a purge at work (a slow start widens
    // the window; a purge that finished gets more to do).
    while kills < 6 || landed < 2 {
        assert!(
            Instant::now() < deadline,
            "{kills} kills, {landed} at work, in 90 s"
        );
        if sessions_left(env) == 0 {
            expired_sessions(env, &format!("s{seeded}"), BATCH as usize);
            seeded += BATCH;
        }
        let before = sessions_left(env);
        let args = ["sessions", "purge", "--batch-size", "200"];
        if run_and_kill(env, &args, &mut rng, window) {
            kills += 1;
            let left = sessions_left(env);
            if left < before && left > 0 {
                landed += 1;
            } else if left == before {
                window += 100;
            }
        }
        // After every kill the audit rows account for every deleted session.
        let (left, audited) = purge_state(env);
        assert_eq!(audited, seeded - left, "after {kills} kill(s)");
    }
    wait_for_killed_sessions(env);
    let gone_before = seeded - sessions_left(env);
    let done = env.json(&["sessions", "purge"]);
    assert_eq!(
        done["deleted"].as_u64(),
        Some(seeded - gone_before),
        "{done}"
    );
    assert_eq!(sessions_left(env), 0);
    assert_eq!(audited(env, "sessions.purge", None, "deleted"), seeded);
    eprintln!(
        "{kills} kills, {landed} in a purge at work; {gone_before} of {seeded} sessions purged before the last run"
    );
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
    const MESSAGES: u64 = 3000;
    const SESSIONS: u64 = 3000;
    expired_sessions(env, "s", SESSIONS as usize);
    let live = |key: &str| {
        count(env.tenant_rows(
            key,
            &format!("SELECT COUNT(*) FROM pf_user_{key}_chat_messages"),
        ))
    };
    let mut seeded = 0;
    let mut rng = Rng::new();
    let (mut kills, mut landed, mut window) = (0, 0, 400);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Until several kills landed in sweeps at work (a slow start widens the
    // window; a run that finished gets more to do).
    while kills < 8 || landed < 3 {
        assert!(
            Instant::now() < deadline,
            "{kills} kills, {landed} at work, in 120 s"
        );
        if tenants.iter().all(|key| live(key) == 0) {
            for key in tenants {
                old_messages(env, key, &format!("m{seeded}"), MESSAGES as usize);
            }
            seeded += MESSAGES;
        }
        let before: i64 = tenants.iter().map(|key| live(key)).sum();
        let args = [
            "retention",
            "run",
            "--all",
            "--jobs",
            "2",
            "--batch-size",
            "50",
        ];
        if run_and_kill(env, &args, &mut rng, window) {
            kills += 1;
            let after: i64 = tenants.iter().map(|key| live(key)).sum();
            if after < before && after > 0 {
                landed += 1;
            } else if after == before {
                window += 100;
            }
        }
    }
    wait_for_killed_sessions(env);
    let moved_before: i64 = tenants.iter().map(|key| seeded as i64 - live(key)).sum();
    let done = env.json(&["retention", "run", "--all", "--batch-size", "50"]);
    assert_eq!(done["complete"], true, "{done}");
    for key in tenants {
        let table = format!("pf_user_{key}_chat_messages");
        let archived =
            count(env.tenant_rows(key, &format!("SELECT COUNT(*) FROM {table}_archive")));
        assert_eq!((live(key), archived), (0, seeded as i64), "{table}");
        assert_eq!(
            audited(env, "retention.sweep", Some(&table), "archived"),
            seeded,
            "{table}: audited copies"
        );
        assert_eq!(
            audited(env, "retention.sweep", Some(&table), "deleted"),
            seeded,
            "{table}: audited deletions"
        );
    }
    assert_eq!(sessions_left(env), 0);
    assert_eq!(
        audited(env, "retention.sweep", Some("pf_user_sessions"), "deleted"),
        SESSIONS
    );
    eprintln!(
        "{kills} kills, {landed} in sweeps at work; {moved_before} messages moved before the last run"
    );
}
on_both_backends!(
    killed_sweeps_are_audited,
    sqlite_killed_retention_sweeps_are_audited,
    postgres_killed_retention_sweeps_are_audited,
    "sweepkill"
);
