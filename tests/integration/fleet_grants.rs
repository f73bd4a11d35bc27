//! `grants check` and `grants apply` over the fleet: the application role's
//! grants on the tenant tables of every member database, not the catalog's
//! only.
//!
//! Roles are global to a server and the tests run in parallel: every test
//! makes a role of its own name, dropped (with its grants, in each database
//! the test made) when the test ends, however it ends.

use crate::common::{Env, PgDatabase, pg_rows, postgres_url};
use crate::least_privilege::{AppRole, ok, run, stderr, stdout};

/// The grants `role` holds in `db` on relations whose name starts with
/// `prefix`, as `relation:PRIVILEGE`, sorted (from the ACLs).
fn grants_on(db: &PgDatabase, role: &AppRole, prefix: &str) -> Vec<String> {
    let mut rows: Vec<String> = pg_rows(
        &mut db.client(),
        &format!(
            "SELECT c.relname || ':' || a.privilege_type FROM pg_class c, aclexplode(c.relacl) a \
             WHERE a.grantee = '{}'::regrole AND left(c.relname, {}) = '{prefix}' \
               AND c.relnamespace = current_schema()::regnamespace",
            role.name,
            prefix.len()
        ),
    )
    .into_iter()
    .map(|mut r| r.remove(0))
    .collect();
    rows.sort();
    rows
}

fn dml(table: &str) -> Vec<String> {
    ["DELETE", "INSERT", "SELECT", "UPDATE"]
        .iter()
        .map(|p| format!("{table}:{p}"))
        .collect()
}

/// A tenant on a member whose grant was revoked by hand, and another with a
/// privilege granted by hand: `grants check` reports both, naming the member
/// (exit 1, and in `--json`); `--dry-run` prints the statements under the
/// member's name and changes nothing; `grants apply` repairs them on the
/// member, audited in the catalog's log; then `check` is clean. The
/// catalog's own tenants and shared tables are still checked.
#[test]
fn member_drift_is_reported_and_repaired_postgres() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fgrants");
    let m1 = PgDatabase::create(&server, "fgrantsm1");
    let role = AppRole::on(&[&server], &[&env.url, &m1.url]);
    ok(&env, &role, &["init"]);
    ok(&env, &role, &["grants", "apply", "--create-role"]);
    ok(&env, &role, &["databases", "add", "m1", &m1.url]);
    ok(
        &env,
        &role,
        &["provision", "--database", "catalog", "carol"],
    );
    ok(&env, &role, &["databases", "drain", "catalog"]);
    ok(&env, &role, &["provision", "alice", "bob"]);
    assert_eq!(
        env.json(&["where", "alice"])["database"],
        "m1",
        "alice is on the member"
    );
    // Provisioning on the member granted what the application needs there.
    assert_eq!(
        grants_on(&m1, &role, "pf_user_alice_skills"),
        [
            dml("pf_user_alice_skills"),
            dml("pf_user_alice_skills_progression")
        ]
        .concat()
    );
    // Its audit row is staged on the member (which has no audit log) in
    // the grant's transaction, and copied to the catalog's log once the
    // provisioning has committed: nothing is left staged.
    let staged = pg_rows(
        &mut m1.client(),
        "SELECT count(*)::text FROM pf_audit_stage WHERE row_json LIKE '%grants.grant%'",
    );
    assert_eq!(staged, [["0"]], "copied to the catalog's log");
    let logged = pg_rows(
        &mut env.pg(),
        "SELECT count(*)::text FROM pf_audit_log WHERE action = 'grants.grant' AND entity_type = 'tenant' AND entity_id IN ('alice', 'bob')",
    );
    assert_eq!(logged, [["2"]], "one row per tenant provisioned there");
    let clean = ok(&env, &role, &["grants", "check"]);
    assert!(clean.contains("on the catalog and 1 member(s)"), "{clean}");

    // Drift made by hand on the member.
    let mut member = m1.client();
    member
        .batch_execute(&format!(
            "REVOKE INSERT ON pf_user_alice_skills FROM {0}; GRANT TRUNCATE ON pf_user_bob_experiences TO {0}",
            role.name
        ))
        .unwrap();
    let check = run(&env, &role, &["grants", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    let text = stdout(&check);
    assert!(
        text.contains(&format!(
            "member m1: missing grant: INSERT on pf_user_alice_skills to {}",
            role.name
        )),
        "{text}"
    );
    assert!(
        text.contains("member m1: extra privilege: TRUNCATE on pf_user_bob_experiences"),
        "{text}"
    );
    assert!(
        text.contains("2 problem(s)") && text.contains("on the catalog and 1 member(s)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&env, &role, &["--json", "grants", "check"]))).unwrap();
    assert_eq!(json["ok"], false, "{json}");
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{json}");
    assert!(problems.iter().all(|p| p["database"] == "m1"), "{json}");
    let kinds: Vec<&str> = problems
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"missing_grant") && kinds.contains(&"extra_privilege"),
        "{json}"
    );
    let databases: Vec<(String, bool)> = json["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["database"].as_str().unwrap().to_string(), d["ok"] == true))
        .collect();
    assert_eq!(
        databases,
        [("catalog".to_string(), true), ("m1".to_string(), false)],
        "{json}"
    );

    // The catalog is still checked too: its tenant and its shared tables.
    env.system_exec(&format!(
        "REVOKE UPDATE ON pf_user_carol_skills FROM {}",
        role.name
    ));
    let both = stdout(&run(&env, &role, &["grants", "check"]));
    assert!(
        both.contains(&format!(
            "\nmissing grant: UPDATE on pf_user_carol_skills to {}",
            role.name
        )) || both.starts_with("missing grant: UPDATE on pf_user_carol_skills"),
        "the catalog's line is not a member's: {both}"
    );

    // A dry run prints the statements, under the member's name, and changes nothing.
    let before = grants_on(&m1, &role, "pf_user_");
    let dry = run(&env, &role, &["grants", "apply", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let script = stdout(&dry);
    let on_member = script
        .find("-- on member m1")
        .unwrap_or_else(|| panic!("no member header in {script}"));
    for want in [
        format!(
            "GRANT INSERT ON TABLE pf_user_alice_skills TO {};",
            role.name
        ),
        format!(
            "REVOKE TRUNCATE ON TABLE pf_user_bob_experiences FROM {};",
            role.name
        ),
    ] {
        let at = script
            .find(&want)
            .unwrap_or_else(|| panic!("{want} not in {script}"));
        assert!(at > on_member, "{want} is not under the member: {script}");
    }
    let carol = format!(
        "GRANT UPDATE ON TABLE pf_user_carol_skills TO {};",
        role.name
    );
    assert!(
        script.find(&carol).is_some_and(|at| at < on_member),
        "the catalog's statement comes first: {script}"
    );
    assert_eq!(
        grants_on(&m1, &role, "pf_user_"),
        before,
        "the dry run changed nothing"
    );
    assert!(before.contains(&"pf_user_bob_experiences:TRUNCATE".to_string()));
    assert!(!before.contains(&"pf_user_alice_skills:INSERT".to_string()));
    assert_eq!(
        run(&env, &role, &["grants", "check"]).status.code(),
        Some(1)
    );

    // apply repairs the member (and the catalog), audited in the catalog's log.
    let applied = ok(&env, &role, &["grants", "apply"]);
    assert!(
        applied.contains("member m1: grant INSERT to")
            && applied.contains("grants and policies match"),
        "{applied}"
    );
    let after = grants_on(&m1, &role, "pf_user_");
    assert!(after.contains(&"pf_user_alice_skills:INSERT".to_string()));
    assert!(!after.contains(&"pf_user_bob_experiences:TRUNCATE".to_string()));
    let clean = ok(&env, &role, &["grants", "check"]);
    assert!(
        clean.contains("match on the catalog and 1 member(s)"),
        "{clean}"
    );
    let audited: Vec<String> = pg_rows(
        &mut env.pg(),
        "SELECT action || ' ' || (details::json->>'database') || ' ' || (details::json->>'change') \
         FROM pf_audit_log WHERE action IN ('grants.grant', 'grants.revoke') AND entity_type = 'role' \
         ORDER BY 1",
    )
    .into_iter()
    .map(|mut r| r.remove(0))
    .collect();
    for want in [
        format!("grants.grant m1 grant to {}", role.name),
        format!("grants.revoke m1 revoke from {}", role.name),
        format!("grants.grant catalog grant to {}", role.name),
    ] {
        assert!(audited.contains(&want), "{want} not in {audited:?}");
    }
    // The member's rows were staged with its changes and then copied:
    // nothing is left on the member.
    let left = pg_rows(
        &mut m1.client(),
        "SELECT count(*)::text FROM pf_audit_stage",
    );
    assert_eq!(left, [["0"]]);
    // A row a killed apply left staged reaches the log with the next apply.
    m1.client()
        .batch_execute(
            "INSERT INTO pf_audit_stage (id, row_json) VALUES ('left-by-kill', \
             '{\"user_id\":null,\"action\":\"grants.grant\",\"entity_type\":\"role\",\"entity_id\":\"r\",\"command\":\"grants\",\"execution_time_ms\":1,\"error\":null,\"details\":null}')",
        )
        .unwrap();
    ok(&env, &role, &["grants", "apply"]);
    let logged = pg_rows(
        &mut env.pg(),
        "SELECT count(*)::text FROM pf_audit_log WHERE id = 'left-by-kill'",
    );
    assert_eq!(logged, [["1"]], "the leftover row was copied");
    let left = pg_rows(
        &mut m1.client(),
        "SELECT count(*)::text FROM pf_audit_stage",
    );
    assert_eq!(left, [["0"]]);
}

/// A member that cannot be reached: `grants apply` repairs the others and
/// names it (exit 3); `grants check` checks the others and names it (exit 3
/// when they are clean).
#[test]
fn an_unreachable_member_is_named_and_the_others_are_done_postgres() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fgdown");
    let near = PgDatabase::create(&server, "fgdownnear");
    let gone = PgDatabase::create(&server, "fgdowngone");
    let role = AppRole::on(&[&server], &[&env.url, &near.url, &gone.url]);
    ok(&env, &role, &["init"]);
    ok(&env, &role, &["grants", "apply", "--create-role"]);
    ok(&env, &role, &["databases", "add", "near", &near.url]);
    ok(&env, &role, &["databases", "add", "gone", &gone.url]);
    ok(&env, &role, &["databases", "drain", "catalog"]);
    ok(&env, &role, &["databases", "drain", "gone"]);
    ok(&env, &role, &["provision", "dora"]);
    near.client()
        .batch_execute(&format!(
            "REVOKE SELECT ON pf_user_dora_experiences FROM {}",
            role.name
        ))
        .unwrap();
    // The member's server is not there any more (a closed port).
    let nowhere = "postgres://postgres@127.0.0.1:1/nowhere";
    env.system_exec(&format!(
        "UPDATE pf_databases SET url = '{nowhere}' WHERE name = 'gone'"
    ));

    let check = run(&env, &role, &["grants", "check"]);
    assert_eq!(check.status.code(), Some(1), "drift on near wins");
    assert!(
        stdout(&check).contains("member near: missing grant: SELECT on pf_user_dora_experiences"),
        "{}",
        stdout(&check)
    );
    assert!(
        stderr(&check).contains("not checked: member gone"),
        "{}",
        stderr(&check)
    );

    let apply = run(&env, &role, &["grants", "apply"]);
    assert_eq!(apply.status.code(), Some(3), "{}", stderr(&apply));
    assert!(
        stderr(&apply).contains("not repaired: member gone"),
        "{}",
        stderr(&apply)
    );
    assert!(
        grants_on(&near, &role, "pf_user_dora_experiences")
            .contains(&"pf_user_dora_experiences:SELECT".into()),
        "near was repaired"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&env, &role, &["--json", "grants", "check"]))).unwrap();
    assert_eq!(json["problems"].as_array().unwrap().len(), 0, "{json}");
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["failed"][0]["database"], "gone", "{json}");
    let check = run(&env, &role, &["grants", "check"]);
    assert_eq!(check.status.code(), Some(3), "{}", stdout(&check));
}

/// A member on another server: the role must exist there too (roles are
/// per server). `check` says so, naming the member; `apply` without
/// `--create-role` refuses (exit 2) and changes nothing; with it, the role
/// is created on that server and granted the member's tenant tables.
#[test]
fn a_member_on_another_server_needs_the_role_there_postgres() {
    let Some(server) = postgres_url() else { return };
    let Ok(second) = std::env::var("PATHFINDER_TEST_POSTGRES_URL2") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: PostgreSQL test a_member_on_another_server_needs_the_role_there_postgres (set PATHFINDER_TEST_POSTGRES_URL2 to run it)"
        );
        return;
    };
    let env = Env::postgres(&server, "fgfar");
    let far = PgDatabase::create(&second, "fgfarm");
    let role = AppRole::on(&[&server, &second], &[&env.url, &far.url]);
    ok(&env, &role, &["init"]);
    ok(&env, &role, &["grants", "apply", "--create-role"]);
    ok(&env, &role, &["databases", "add", "far", &far.url]);
    ok(&env, &role, &["databases", "drain", "catalog"]);
    ok(&env, &role, &["provision", "erin"]);
    let exists_on_far = || {
        pg_rows(
            &mut far.client(),
            &format!(
                "SELECT count(*)::text FROM pg_roles WHERE rolname = '{}'",
                role.name
            ),
        )[0][0]
            == "1"
    };
    assert!(!exists_on_far());

    let check = run(&env, &role, &["grants", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains(&format!(
            "member far: role {} does not exist on this member's server",
            role.name
        )),
        "{}",
        stdout(&check)
    );

    let refused = run(&env, &role, &["grants", "apply"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("does not exist on member(s) far"),
        "{}",
        stderr(&refused)
    );
    assert!(!exists_on_far(), "nothing was changed");

    ok(&env, &role, &["grants", "apply", "--create-role"]);
    assert!(exists_on_far());
    assert_eq!(
        grants_on(&far, &role, "pf_user_erin_skills"),
        [
            dml("pf_user_erin_skills"),
            dml("pf_user_erin_skills_progression")
        ]
        .concat()
    );
    ok(&env, &role, &["grants", "check"]);
}
