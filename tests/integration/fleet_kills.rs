//! Provisioning and migrating tenants onto PostgreSQL member databases,
//! killed with SIGKILL at random moments and run again: every tenant ends
//! complete on exactly one member, at its version, nothing stray is left on
//! any member, and each change is audited once.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit_trail::run_and_kill;
use crate::common::{Env, PgDatabase, pg_rows, postgres_url};
use crate::concurrent_runs::wait_for_killed_sessions;
use crate::retention::Rng;

use pathfinder_db::schema::tenant::TENANT_TABLES;

const USERS: usize = 120;

/// Tenant key -> its tables and views on one member database.
fn relations(member: &PgDatabase) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rows = pg_rows(
        &mut member.client(),
        "SELECT relname FROM pg_class WHERE relname LIKE 'pf\\_user\\_%' AND relkind IN ('r', 'm')",
    );
    for r in rows {
        // Usernames here are k<digits>: the key ends at the next underscore.
        let rest = r[0].strip_prefix("pf_user_").expect("a tenant relation");
        let (key, table) = rest.split_once('_').expect("pf_user_<key>_<table>");
        out.entry(key.to_string())
            .or_default()
            .insert(table.to_string());
    }
    out
}

/// Kills `args` at random moments until `kills` kills landed (or a run
/// finished first), then runs it to the end. Returns the kills that landed.
fn kill_then_finish(
    env: &Env,
    args: &[&str],
    rng: &mut Rng,
    kills: usize,
    within_ms: u64,
) -> usize {
    let mut landed = 0;
    for _ in 0..kills {
        if !run_and_kill(env, args, rng, within_ms) {
            break;
        }
        landed += 1;
        wait_for_killed_sessions(env);
    }
    env.ok(args);
    landed
}

/// Success rows of `action` per tenant.
fn audited_once(env: &Env, action: &str) -> BTreeMap<String, String> {
    env.system_rows(&format!(
        "SELECT entity_id, COUNT(*) FROM pf_audit_log WHERE action = '{action}' AND response_status = 200 GROUP BY entity_id"
    ))
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect()
}

#[test]
fn provisioning_and_migrating_onto_members_survive_sigkill() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fkill");
    let members = [
        ("ka", PgDatabase::create(&server, "fkilla")),
        ("kb", PgDatabase::create(&server, "fkillb")),
    ];
    env.ok(&["init"]);
    for (name, db) in &members {
        env.ok(&["databases", "add", name, &db.url]);
    }
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (0..USERS).map(|i| format!("k{i:03}")).collect();
    let file = env.path().join("users.txt");
    std::fs::write(&file, users.join("\n") + "\n").unwrap();
    let file = file.to_str().unwrap();
    let mut rng = Rng::new();

    let provision = ["provision", "--to", "3", "--jobs", "2", "--from-file", file];
    let landed = kill_then_finish(&env, &provision, &mut rng, 10, 250);
    eprintln!("fleet_kills: {landed} kills landed during provisioning");
    assert!(landed >= 2, "kills landed during provisioning: {landed}");

    // Every tenant active at version 3 on a member, whole, and nothing else
    // on either member.
    let listed = env.json(&["tenants"]);
    let mut placed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in listed["tenants"].as_array().unwrap() {
        assert_eq!(t["status"], "active", "{t}");
        assert_eq!(t["schema_version"], 3, "{t}");
        placed
            .entry(t["database"].as_str().unwrap().to_string())
            .or_default()
            .insert(t["username"].as_str().unwrap().to_string());
    }
    assert_eq!(placed.values().map(BTreeSet::len).sum::<usize>(), USERS);
    let whole: BTreeSet<String> = TENANT_TABLES
        .iter()
        .map(|t| t.to_string())
        .chain(["career_summary".to_string()])
        .collect();
    for (name, db) in &members {
        let found = relations(db);
        assert_eq!(
            found.keys().cloned().collect::<BTreeSet<_>>(),
            placed.get(*name).cloned().unwrap_or_default(),
            "member {name} holds exactly the tenants placed on it"
        );
        for (key, tables) in &found {
            assert!(whole.is_subset(tables), "{key} on {name}: {tables:?}");
        }
    }
    let provisions = audited_once(&env, "tenant.provision");
    assert_eq!(provisions.len(), USERS, "every provision audited");
    assert!(
        provisions.values().all(|n| n == "1"),
        "each provision audited once: {provisions:?}"
    );

    // Migrated to the latest version under kills: each member's DDL and the
    // catalog's record commit apart, and a rerun records what a killed run
    // committed on the member only.
    let migrate = ["migrate", "--all", "--jobs", "2"];
    // One version over 120 tenants takes a few hundred milliseconds on a
    // quiet machine: kills come sooner than during provisioning.
    let landed = kill_then_finish(&env, &migrate, &mut rng, 10, 60);
    eprintln!("fleet_kills: {landed} kills landed during migrate");
    assert!(landed >= 1, "kills landed during migrate: {landed}");
    let status = env.json(&["status"]);
    let latest = status["latest_version"].as_i64().expect("latest version");
    let versions = pg_rows(
        &mut env.pg(),
        "SELECT schema_version, status, COUNT(*) FROM pf_tenants GROUP BY schema_version, status",
    );
    assert_eq!(
        versions,
        vec![vec![latest.to_string(), "active".into(), USERS.to_string()]]
    );
    env.ok(&["verify", "--all"]);
    for (name, db) in &members {
        for user in placed.get(*name).into_iter().flatten().step_by(11) {
            let history = pg_rows(
                &mut db.client(),
                &format!("SELECT version FROM pf_user_{user}_schema_history ORDER BY version"),
            );
            let want: Vec<Vec<String>> = (1..=latest).map(|v| vec![v.to_string()]).collect();
            assert_eq!(history, want, "history of {user} on {name}");
        }
    }
    let migrations = audited_once(&env, "tenant.migrate");
    assert_eq!(migrations.len(), USERS, "every migration audited");
    assert!(
        migrations.values().all(|n| n == "1"),
        "each migration audited once: {migrations:?}"
    );
    // Placement's counts moved with every registration that committed.
    env.assert_member_counts_agree();
}
