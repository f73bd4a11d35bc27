//! Least privilege: the application's own role and row-level security on
//! the real PostgreSQL, the files SQLite creates private to their owner.
//!
//! Roles are global to the server and the tests run in parallel (and other
//! runs share the server): every test makes a role of its own name, dropped
//! when the test ends, however it ends. The application's view is taken with
//! `SET LOCAL ROLE` from the test's superuser connection, in a transaction
//! that also sets `pathfinder.user_id` as the application does per request.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{self, Env};

static ROLES: AtomicUsize = AtomicUsize::new(0);

/// A role made for one test, dropped (with its grants, in each database the
/// test made, then on each server) when the test ends.
pub(crate) struct AppRole {
    pub(crate) name: String,
    databases: Vec<String>,
    servers: Vec<String>,
}

impl AppRole {
    /// A name no other test (nor another run on the server) uses. Not created:
    /// `grants apply --create-role` does that.
    fn new(server: &str, env: &Env) -> AppRole {
        AppRole::on(&[server], &[&env.url])
    }

    /// The same, cleaned from several databases and servers (a fleet).
    pub(crate) fn on(servers: &[&str], databases: &[&str]) -> AppRole {
        AppRole {
            name: format!(
                "pf_app_{}_{}",
                std::process::id(),
                ROLES.fetch_add(1, Ordering::SeqCst)
            ),
            databases: databases.iter().map(|d| d.to_string()).collect(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        for url in &self.databases {
            if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP OWNED BY {}", self.name));
            }
        }
        for url in &self.servers {
            if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
            }
        }
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The binary with `role` as the configured application role.
pub(crate) fn run(env: &Env, role: &AppRole, args: &[&str]) -> Output {
    env.cmd()
        .env("PATHFINDER_APP_ROLE", &role.name)
        .args(args)
        .output()
        .expect("run pathfinder-db")
}

pub(crate) fn ok(env: &Env, role: &AppRole, args: &[&str]) -> String {
    let out = run(env, role, args);
    assert!(
        out.status.success(),
        "pathfinder-db {args:?} failed ({:?}): {}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `sql` as the application: role `role`, serving `user` (None: the
/// session has not said whom it serves). The rows, or the server's error.
fn as_app(
    env: &Env,
    role: &AppRole,
    user: Option<&str>,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    let mut client = env.pg();
    let mut setup = format!("BEGIN; SET LOCAL ROLE {};", role.name);
    if let Some(user) = user {
        setup.push_str(&format!(" SET LOCAL pathfinder.user_id = '{user}';"));
    }
    client
        .batch_execute(&setup)
        .expect("become the application");
    match client.simple_query(sql) {
        Ok(messages) => {
            client.batch_execute("COMMIT").expect("commit");
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("").to_string())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string()))
        }
    }
}

fn column(rows: Vec<Vec<String>>) -> Vec<String> {
    rows.into_iter().map(|mut r| r.remove(0)).collect()
}

/// The grants `role` holds on relations whose name starts with `prefix`, as
/// `relation:PRIVILEGE`, sorted. (From the ACLs: information_schema leaves
/// materialized views out.)
fn grants_on(env: &Env, role: &AppRole, prefix: &str) -> Vec<String> {
    let mut rows = column(common::pg_rows(
        &mut env.pg(),
        &format!(
            "SELECT c.relname || ':' || a.privilege_type FROM pg_class c, aclexplode(c.relacl) a \
             WHERE a.grantee = '{}'::regrole AND left(c.relname, {}) = '{prefix}' \
               AND c.relnamespace = current_schema()::regnamespace",
            role.name,
            prefix.len()
        ),
    ));
    rows.sort();
    rows
}

/// A career-analytics row of `key` old enough for the shipped retention
/// policy (three years): the next sweep moves it to the tenant's archive,
/// which it creates.
fn old_analytics(env: &Env, key: &str, id: &str) {
    env.tenant_exec(
        key,
        &format!(
            "INSERT INTO pf_user_{key}_career_analytics (id, metric_date, metric_type, metric_value) \
             VALUES ('{id}', '2019-01-01', 'score', 1)"
        ),
    );
}

fn policies_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

/// The whole story on PostgreSQL: without a role everything works as
/// before and `grants check` says the role is missing; `grants apply
/// --create-role` grants what the application needs (archives made before
/// included); then, as the application, a session serving alice sees only
/// alice's rows in each shared table, cannot read bob's key, cannot change
/// or delete an audit row, may use its tenant tables but not drop, alter or
/// truncate them nor the registry, only reads archives; a session that has
/// not said whom it serves sees no user rows. An archive a sweep creates
/// later is readable at once; a deprovisioning that keeps archives takes
/// them away from the application.
#[test]
fn the_application_sees_and_does_only_what_it_may_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lpriv");
    let role = AppRole::new(&server, &env);

    // No role yet: provisioning and sweeps work as before.
    ok(&env, &role, &["provision", "alice", "bob"]);
    let check = run(&env, &role, &["grants", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains(&format!("role {} does not exist", role.name)),
        "{}",
        stdout(&check)
    );
    let doctor = ok(&env, &role, &["doctor"]);
    assert!(doctor.contains("ok    app role: role"), "{doctor}");
    ok(
        &env,
        &role,
        &["policies", "apply", "--dir", &policies_dir()],
    );
    old_analytics(&env, "alice", "a-old");
    ok(&env, &role, &["retention", "run", "--all"]);

    env.system_exec(
        "INSERT INTO pf_users (id, username, email, password_hash) VALUES \
           ('u-alice', 'alice', 'alice@example.com', 'x'), ('u-bob', 'bob', 'bob@example.com', 'x'); \
         INSERT INTO pf_encryption_keys (id, user_id, key_encrypted, key_salt) VALUES \
           ('k-alice', 'u-alice', 'wrapped-a', 's'), ('k-bob', 'u-bob', 'wrapped-b', 's'); \
         INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) VALUES \
           ('s-alice', 'u-alice', 'ta', CURRENT_TIMESTAMP + INTERVAL '1 day'), \
           ('s-bob', 'u-bob', 'tb', CURRENT_TIMESTAMP + INTERVAL '1 day'); \
         INSERT INTO pf_audit_log (id, user_id, action) VALUES \
           ('log-alice', 'u-alice', 'login'), ('log-bob', 'u-bob', 'login');",
    );

    // The role, and every grant it needs.
    let applied = ok(&env, &role, &["grants", "apply", "--create-role"]);
    assert!(applied.contains("grants and policies match"), "{applied}");
    ok(&env, &role, &["grants", "check"]);
    assert!(
        grants_on(&env, &role, "pf_user_alice_career_analytics_archive")
            == ["pf_user_alice_career_analytics_archive:SELECT"],
        "the archive made before the role is granted too"
    );

    // A sweep after the role exists grants the archive it creates at once.
    old_analytics(&env, "bob", "b-old");
    ok(&env, &role, &["retention", "run", "--all"]);
    assert_eq!(
        grants_on(&env, &role, "pf_user_bob_career_analytics_archive"),
        ["pf_user_bob_career_analytics_archive:SELECT"]
    );
    ok(&env, &role, &["grants", "check"]);

    let alice = Some("u-alice");
    let sql = |user: Option<&str>, sql: &str| as_app(&env, &role, user, sql);
    let one_column =
        |user: Option<&str>, q: &str| column(sql(user, q).unwrap_or_else(|e| panic!("{q}: {e}")));
    let refused = |user: Option<&str>, q: &str| -> String {
        match sql(user, q) {
            Ok(rows) => panic!("the application may run {q}: {rows:?}"),
            Err(e) => e,
        }
    };

    // Its own rows of each shared table, nothing of bob's nor of nobody's.
    assert_eq!(one_column(alice, "SELECT id FROM pf_users"), ["u-alice"]);
    assert_eq!(
        one_column(alice, "SELECT user_id FROM pf_encryption_keys"),
        ["u-alice"]
    );
    assert_eq!(
        one_column(
            alice,
            "SELECT key_encrypted FROM pf_encryption_keys WHERE user_id = 'u-bob'"
        ),
        Vec::<String>::new(),
        "another user's key"
    );
    assert_eq!(
        one_column(alice, "SELECT id FROM pf_user_sessions"),
        ["s-alice"]
    );
    assert_eq!(
        one_column(alice, "SELECT id FROM pf_audit_log ORDER BY id"),
        ["log-alice"],
        "no row of bob's, none of the tool's own (user_id NULL)"
    );
    // Changes stay within its own rows.
    assert_eq!(
        sql(alice, "UPDATE pf_users SET bio = 'x' WHERE id = 'u-bob'").unwrap(),
        Vec::<Vec<String>>::new()
    );
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT bio IS NULL FROM pf_users WHERE id = 'u-bob'"
        ),
        [["t"]]
    );
    sql(
        alice,
        "UPDATE pf_users SET bio = 'mine' WHERE id = 'u-alice'",
    )
    .unwrap();
    assert!(
        refused(
            alice,
            "INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) VALUES ('s-x', 'u-bob', 'tx', CURRENT_TIMESTAMP)"
        )
        .contains("row-level security"),
    );

    // The audit log: append and read, never change or delete.
    sql(
        alice,
        "INSERT INTO pf_audit_log (id, user_id, action) VALUES ('log-alice-2', 'u-alice', 'view')",
    )
    .unwrap();
    assert!(
        refused(
            alice,
            "INSERT INTO pf_audit_log (id, user_id, action) VALUES ('log-forged', 'u-bob', 'view')"
        )
        .contains("row-level security")
    );
    for q in [
        "UPDATE pf_audit_log SET action = 'nothing' WHERE id = 'log-alice'",
        "DELETE FROM pf_audit_log WHERE id = 'log-alice'",
    ] {
        assert!(refused(alice, q).contains("permission denied"), "{q}");
    }
    assert!(
        refused(alice, "UPDATE pf_encryption_keys SET key_salt = 'x'")
            .contains("permission denied")
    );

    // Tenant tables: DML, never DDL nor TRUNCATE; the registry: nothing.
    sql(
        alice,
        "INSERT INTO pf_user_alice_skills (id, skill_name) VALUES ('sk1', 'Rust'); \
         UPDATE pf_user_alice_skills SET skill_category = 'lang' WHERE id = 'sk1'; \
         DELETE FROM pf_user_alice_skills WHERE id = 'sk1'",
    )
    .unwrap();
    assert_eq!(
        one_column(alice, "SELECT count(*) FROM pf_user_alice_experiences"),
        ["0"]
    );
    one_column(alice, "SELECT count(*) FROM pf_user_alice_career_summary");
    for q in [
        "DROP TABLE pf_user_alice_skills",
        "ALTER TABLE pf_user_alice_skills ADD x INTEGER",
        "TRUNCATE pf_user_alice_skills",
        "DROP TABLE pf_tenants",
        "ALTER TABLE pf_tenants ADD x INTEGER",
        "TRUNCATE pf_tenants",
        "SELECT * FROM pf_tenants",
        "DELETE FROM pf_tenants",
        "SELECT * FROM pf_user_alice_schema_history",
        "CREATE TABLE pf_mine (x INTEGER)",
        "REFRESH MATERIALIZED VIEW pf_user_alice_career_summary",
    ] {
        let e = refused(alice, q);
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{q}: {e}"
        );
    }
    // Archives: read only.
    assert_eq!(
        one_column(
            alice,
            "SELECT id FROM pf_user_alice_career_analytics_archive"
        ),
        ["a-old"]
    );
    for q in [
        "DELETE FROM pf_user_alice_career_analytics_archive",
        "UPDATE pf_user_alice_career_analytics_archive SET metric_type = 'x'",
        "INSERT INTO pf_user_alice_career_analytics_archive (id, metric_date, metric_type, archived_at) VALUES ('x', '2019-01-01', 'x', CURRENT_TIMESTAMP)",
    ] {
        assert!(refused(alice, q).contains("permission denied"), "{q}");
    }

    // A session that has not said whom it serves sees no user rows.
    for table in [
        "pf_users",
        "pf_encryption_keys",
        "pf_user_sessions",
        "pf_audit_log",
    ] {
        assert_eq!(
            one_column(None, &format!("SELECT count(*) FROM {table}")),
            ["0"],
            "{table}"
        );
    }
    // Nor after an earlier request's SET LOCAL ended (the setting is '').
    let mut client = env.pg();
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE {0}; SET LOCAL pathfinder.user_id = 'u-alice'; COMMIT; \
             BEGIN; SET LOCAL ROLE {0};",
            role.name
        ))
        .unwrap();
    let rows = client
        .simple_query("SELECT count(*) FROM pf_users")
        .unwrap();
    let count = rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(count.as_deref(), Some("0"));
    drop(client);

    // The owner (pathfinder-db) still sees every row: row security is not forced.
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT bool_or(relforcerowsecurity)::text, bool_and(relrowsecurity)::text FROM pg_class \
             WHERE relname IN ('pf_users', 'pf_user_sessions', 'pf_encryption_keys', 'pf_audit_log') \
               AND relnamespace = current_schema()::regnamespace"
        ),
        [["false", "true"]]
    );

    // A deprovisioning that keeps archives takes them from the application.
    ok(&env, &role, &["deprovision", "bob", "--archive", "--yes"]);
    assert_eq!(
        grants_on(&env, &role, "pf_user_bob_"),
        Vec::<String>::new(),
        "nothing of a deprovisioned tenant is the application's"
    );
    assert!(
        refused(alice, "SELECT * FROM pf_user_bob_career_analytics_archive")
            .contains("permission denied")
    );
    ok(&env, &role, &["grants", "check"]);

    // Every grant change was audited.
    let audited = column(common::pg_rows(
        &mut env.pg(),
        "SELECT DISTINCT action FROM pf_audit_log WHERE action LIKE 'grants.%' ORDER BY 1",
    ));
    assert_eq!(
        audited,
        ["grants.create_role", "grants.grant", "grants.revoke"],
        "{audited:?}"
    );
}

/// A tenant keeps exactly its grants: provisioned at an older version, then
/// migrated by a version that builds a table anew (grants go with a dropped
/// table), it has DML on its nine tables, SELECT on its career summary and
/// nothing else (not on its history). A tenant provisioned at the latest
/// version has the same. Each grant is audited with the command that made it.
#[test]
fn a_tenant_keeps_exactly_its_grants_through_provision_and_migrate_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lprivmig");
    let role = AppRole::new(&server, &env);
    // The built-in templates and a tenant version 5 that builds
    // quick_summary again (as a migration that reshapes a table would).
    let templates = env.path().join("templates");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("table-templates"),
        &templates,
    );
    std::fs::write(
        templates.join("tenant/V5__rebuild_quick_summary.sql.tera"),
        "ALTER TABLE {{ p }}quick_summary RENAME TO {{ p }}quick_summary_v4;\n\
         CREATE TABLE {{ p }}quick_summary AS SELECT * FROM {{ p }}quick_summary_v4;\n\
         DROP TABLE {{ p }}quick_summary_v4;\n",
    )
    .unwrap();
    let with_templates = |args: &[&str]| {
        let out = env
            .cmd()
            .env("PATHFINDER_APP_ROLE", &role.name)
            .env("PATHFINDER_TEMPLATES_DIR", &templates)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    with_templates(&["init"]);
    with_templates(&["grants", "apply", "--create-role"]);
    with_templates(&["provision", "carol", "--to", "4"]);
    with_templates(&["provision", "dave"]);
    let expected = |key: &str| {
        let mut want: Vec<String> = pathfinder_db::schema::tenant::TABLES
            .iter()
            .flat_map(|t| {
                ["DELETE", "INSERT", "SELECT", "UPDATE"]
                    .map(|p| format!("pf_user_{key}_{}:{p}", t.name))
            })
            .collect();
        want.push(format!("pf_user_{key}_career_summary:SELECT"));
        want.sort();
        want
    };
    assert_eq!(grants_on(&env, &role, "pf_user_carol_"), expected("carol"));
    assert_eq!(grants_on(&env, &role, "pf_user_dave_"), expected("dave"));

    // The migration drops quick_summary (and its grants) and makes it again.
    with_templates(&["migrate", "--all"]);
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT schema_version::text FROM pf_tenants WHERE username = 'carol'"
        ),
        [["5"]]
    );
    assert_eq!(
        grants_on(&env, &role, "pf_user_carol_"),
        expected("carol"),
        "the rebuilt table is granted again, and nothing more"
    );
    with_templates(&["grants", "check"]);

    let commands = column(common::pg_rows(
        &mut env.pg(),
        "SELECT entity_id || ':' || request_path FROM pf_audit_log \
         WHERE action = 'grants.grant' AND entity_type = 'tenant' ORDER BY created_at",
    ));
    assert_eq!(
        commands,
        ["carol:provision", "dave:provision", "carol:migrate"]
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `grants check` finds what a DBA did by hand (a DELETE on the audit log, a
/// disabled and a dropped policy, a revoked grant, row security forced on the
/// owner, CREATE on the schema) and exits 1, as do `doctor` and `verify`;
/// `grants apply --dry-run` changes nothing; `grants apply` repairs all but
/// the schema right (a DBA's decision: exit 1, named), audited.
#[test]
fn grants_check_finds_hand_made_drift_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lprivdrift");
    let role = AppRole::new(&server, &env);
    ok(&env, &role, &["init"]);
    ok(&env, &role, &["grants", "apply", "--create-role"]);
    ok(&env, &role, &["provision", "alice"]);
    ok(&env, &role, &["grants", "check"]);
    ok(&env, &role, &["verify", "--all"]);

    let drifted = |what: &str, want: &str| {
        let out = run(&env, &role, &["grants", "check"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(want),
            "{what}: no {want:?} in\n{}",
            stdout(&out)
        );
    };
    env.system_exec(&format!("GRANT DELETE ON pf_audit_log TO {}", role.name));
    drifted(
        "a hand-made grant",
        "extra privilege: DELETE on pf_audit_log",
    );
    env.system_exec("ALTER TABLE pf_users DISABLE ROW LEVEL SECURITY");
    drifted(
        "a disabled policy",
        "policy disabled: row-level security is off on pf_users",
    );
    env.system_exec("DROP POLICY pf_user_sessions_own_rows ON pf_user_sessions");
    drifted(
        "a dropped policy",
        "policy missing: pf_user_sessions_own_rows on pf_user_sessions",
    );
    env.system_exec("CREATE POLICY everyone ON pf_encryption_keys USING (true)");
    drifted(
        "a widening policy",
        "extra policy: everyone on pf_encryption_keys",
    );
    env.system_exec(&format!(
        "REVOKE INSERT ON pf_user_alice_skills FROM {}",
        role.name
    ));
    drifted(
        "a revoked grant",
        &format!(
            "missing grant: INSERT on pf_user_alice_skills to {}",
            role.name
        ),
    );
    env.system_exec("ALTER TABLE pf_audit_log FORCE ROW LEVEL SECURITY");
    drifted(
        "forced row security",
        "row-level security is forced on pf_audit_log",
    );
    env.system_exec(&format!("GRANT CREATE ON SCHEMA public TO {}", role.name));
    drifted("DDL rights", "has CREATE on the schema");

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&env, &role, &["--json", "grants", "check"]))).unwrap();
    assert_eq!(json["ok"], false);
    let kinds: std::collections::BTreeSet<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "create_right",
            "extra_policy",
            "extra_privilege",
            "missing_grant",
            "policy_missing",
            "row_security_disabled",
            "row_security_forced"
        ]
    );

    // doctor and verify report it too.
    let doctor = run(&env, &role, &["doctor"]);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        stdout(&doctor).contains("fail  app role: 7 problem(s)"),
        "{}",
        stdout(&doctor)
    );
    let verify = run(&env, &role, &["verify", "alice"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stdout(&verify).contains("grants: extra privilege: DELETE on pf_audit_log"),
        "{}",
        stdout(&verify)
    );

    // A dry run prints the statements and changes nothing.
    let dry = run(&env, &role, &["grants", "apply", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let dry = stdout(&dry);
    assert!(
        dry.contains(&format!(
            "REVOKE DELETE ON TABLE pf_audit_log FROM {};",
            role.name
        )),
        "{dry}"
    );
    assert!(
        dry.contains("ALTER TABLE pf_users ENABLE ROW LEVEL SECURITY;"),
        "{dry}"
    );
    assert_eq!(
        run(&env, &role, &["grants", "check"]).status.code(),
        Some(1)
    );

    assert!(
        dry.contains(&format!(
            "REVOKE CREATE ON SCHEMA public FROM {};",
            role.name
        )),
        "{dry}"
    );

    // apply repairs all of it: the schema right too, since the owner here
    // may revoke it (it acts as the schema's owner).
    ok(&env, &role, &["grants", "apply"]);
    ok(&env, &role, &["grants", "check"]);
    ok(&env, &role, &["doctor"]);
    ok(&env, &role, &["verify", "--all"]);
    // The policies are the ones the schema defines again.
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT count(*)::text FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
             WHERE c.relname IN ('pf_users', 'pf_user_sessions', 'pf_encryption_keys', 'pf_audit_log')"
        ),
        [["4"]]
    );
    let audited = column(common::pg_rows(
        &mut env.pg(),
        "SELECT action || ' ' || (details::json->>'change') FROM pf_audit_log \
         WHERE action IN ('grants.revoke', 'grants.policy', 'grants.grant') AND entity_type = 'role' \
         ORDER BY created_at, 1",
    ));
    for want in [
        format!("grants.revoke revoke from {}", role.name),
        format!("grants.grant grant to {}", role.name),
        "grants.policy enable row security".to_string(),
        "grants.policy unforce row security".to_string(),
        "grants.policy create policy".to_string(),
        "grants.policy drop policy".to_string(),
    ] {
        assert!(audited.contains(&want), "{want} not in {audited:?}");
    }
}

/// A database set up as `grants apply --create-role` leaves it, with alice
/// provisioned: `grants check` passes.
fn granted(server: &str, hint: &str) -> (Env, AppRole) {
    let env = Env::postgres(server, hint);
    let role = AppRole::new(server, &env);
    ok(&env, &role, &["init"]);
    ok(&env, &role, &["grants", "apply", "--create-role"]);
    ok(&env, &role, &["provision", "alice"]);
    ok(&env, &role, &["grants", "check"]);
    (env, role)
}

/// `grants check` exits 1 and prints each of `want`.
fn drift(env: &Env, role: &AppRole, want: &[String]) -> String {
    let out = run(env, role, &["grants", "check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    for w in want {
        assert!(text.contains(w.as_str()), "no {w:?} in\n{text}");
    }
    text
}

/// The audit rows of `grants apply`'s revokes, as `change: objects`.
fn revokes_audited(env: &Env) -> Vec<String> {
    column(common::pg_rows(
        &mut env.pg(),
        "SELECT (details::json->>'change') || ': ' || (details::json->>'objects') FROM pf_audit_log \
         WHERE action = 'grants.revoke' AND entity_type = 'role' ORDER BY created_at, 1",
    ))
}

/// Column privileges (F1): invisible to a check of table ACLs, they let the
/// application rewrite the audit log or read the registry. Reported, revoked
/// by apply (audited), gone from the catalog.
#[test]
fn column_privileges_are_drift_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let (env, role) = granted(&server, "lprivcols");
    let app = &role.name;
    env.system_exec(&format!(
        "GRANT UPDATE (action, user_id) ON pf_audit_log TO {app}; \
         GRANT SELECT (username, tenant_key, status) ON pf_tenants TO {app}; \
         GRANT SELECT (key_encrypted, user_id) ON pf_encryption_keys TO PUBLIC"
    ));
    assert!(as_app(&env, &role, None, "SELECT username FROM pf_tenants").is_ok());
    drift(
        &env,
        &role,
        &[
            "extra privilege: UPDATE (action, user_id) on pf_audit_log (column privilege)".into(),
            "extra privilege: SELECT (status, tenant_key, username) on pf_tenants (column privilege)"
                .into(),
            "extra privilege: SELECT (key_encrypted, user_id) on pf_encryption_keys (column privilege) (granted to PUBLIC)".into(),
        ],
    );
    let dry = ok(&env, &role, &["grants", "apply", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "REVOKE UPDATE (action, user_id) ON TABLE pf_audit_log FROM {app};"
        )),
        "{dry}"
    );
    ok(&env, &role, &["grants", "apply"]);
    ok(&env, &role, &["grants", "check"]);
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT count(*)::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE a.attacl IS NOT NULL AND left(c.relname, 3) = 'pf_'"
        ),
        [["0"]]
    );
    let err = as_app(&env, &role, None, "SELECT username FROM pf_tenants").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    let audited = revokes_audited(&env);
    for want in [
        format!("revoke from {app}: [\"pf_audit_log\"]"),
        format!("revoke from {app}: [\"pf_tenants\"]"),
        "revoke from PUBLIC: [\"pf_encryption_keys\"]".to_string(),
    ] {
        assert!(audited.contains(&want), "{want} not in {audited:?}");
    }
}

/// CREATE on the database (F1, F1b): the application may create a schema
/// named after the owner role, the first schema of the owner's default
/// search_path, and shadow the tool's tables with its own. Every command
/// then refuses to run, naming the schema and the fix (nothing reaches the
/// shadow); once it is gone, check reports the right, apply revokes it.
#[test]
fn create_on_the_database_and_a_shadowing_schema_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let (env, role) = granted(&server, "lprivshadow");
    let app = &role.name;
    let db = common::pg_rows(&mut env.pg(), "SELECT current_database()")[0][0].clone();
    let owner = common::pg_rows(&mut env.pg(), "SELECT current_user")[0][0].clone();
    env.system_exec(&format!("GRANT CREATE ON DATABASE {db} TO {app}"));
    drift(
        &env,
        &role,
        &[format!(
            "{app} has CREATE on database {db}: it may create schemas, and one named after the owner role would shadow pathfinder-db's tables (REVOKE CREATE ON DATABASE {db} FROM {app})"
        )],
    );

    // The application uses it: a schema named after the owner, with its
    // own audit log.
    as_app(
        &env,
        &role,
        None,
        &format!(
            "CREATE SCHEMA {owner}; CREATE TABLE {owner}.pf_audit_log (LIKE public.pf_audit_log INCLUDING DEFAULTS)"
        ),
    )
    .unwrap();
    for args in [
        &["provision", "bob"][..],
        &["grants", "check"][..],
        &["grants", "apply"][..],
    ] {
        let out = run(&env, &role, args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "schema {owner} (owned by {app}) comes before schema public, which holds pathfinder-db's tables, on the search_path of role {owner}"
            )) && err.contains(&format!("ALTER ROLE {owner} SET search_path = public")),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Nothing reached the shadow, nor anything else.
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            &format!("SELECT count(*)::text FROM {owner}.pf_audit_log")
        ),
        [["0"]]
    );
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            "SELECT count(*)::text FROM public.pf_tenants WHERE username = 'bob'"
        ),
        [["0"]]
    );

    // The fix named works (for this database only: the role is the
    // server's): the shadow is off the path, the right is reported.
    env.system_exec(&format!(
        "ALTER ROLE {owner} IN DATABASE {db} SET search_path = public"
    ));
    drift(&env, &role, &[format!("has CREATE on database {db}")]);
    env.system_exec(&format!(
        "ALTER ROLE {owner} IN DATABASE {db} RESET search_path"
    ));

    // The schema gone, the right is still there: apply revokes it.
    as_app(&env, &role, None, &format!("DROP SCHEMA {owner} CASCADE")).unwrap();
    drift(&env, &role, &[format!("has CREATE on database {db}")]);
    ok(&env, &role, &["grants", "apply"]);
    ok(&env, &role, &["grants", "check"]);
    let err = as_app(&env, &role, None, "CREATE SCHEMA again").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    let audited = revokes_audited(&env);
    assert!(
        audited.contains(&format!("revoke from {app}: [\"database {db}\"]")),
        "{audited:?}"
    );
    ok(&env, &role, &["provision", "bob"]);
}

/// The logins the application uses (F11): roles that are members of the
/// application role are checked too: BYPASSRLS, membership in the owner
/// role, privileges granted to them directly, CREATE on the schema. Apply
/// revokes the grants and names the fix of the rest (exit 1); once a DBA
/// made it, check passes.
#[test]
fn logins_that_are_members_of_the_app_role_are_checked_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let (env, role) = granted(&server, "lprivmembers");
    let app = &role.name;
    let web = AppRole::new(&server, &env);
    let web = &web.name;
    let owner = common::pg_rows(&mut env.pg(), "SELECT current_user")[0][0].clone();
    env.system_exec(&format!("CREATE ROLE {web} LOGIN IN ROLE {app}"));
    ok(&env, &role, &["grants", "check"]);
    env.system_exec(&format!(
        "ALTER ROLE {web} BYPASSRLS; GRANT {owner} TO {web}; \
         GRANT SELECT ON pf_tenants TO {web}; GRANT UPDATE (action) ON pf_audit_log TO {web}; \
         GRANT CREATE ON SCHEMA public TO {web}"
    ));
    drift(
        &env,
        &role,
        &[
            format!(
                "{web}, a member of {app}, has BYPASSRLS: row-level security does not apply to it (ALTER ROLE {web} NOBYPASSRLS)"
            ),
            format!("{web}, a member of {app}, is a member of the owner role"),
            format!("extra privilege: SELECT on pf_tenants (granted to {web}, a member of {app})"),
            format!(
                "extra privilege: UPDATE (action) on pf_audit_log (column privilege) (granted to {web}, a member of {app})"
            ),
            format!("{web}, a member of {app}, has CREATE on the schema public"),
        ],
    );
    let doctor = run(&env, &role, &["doctor"]);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        stdout(&doctor).contains("fail  app role: 5 problem(s)"),
        "{}",
        stdout(&doctor)
    );
    let out = run(&env, &role, &["grants", "apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("ALTER ROLE {web} NOBYPASSRLS")),
        "{}",
        stderr(&out)
    );
    let left = drift(&env, &role, &[]);
    assert!(!left.contains("extra privilege"), "{left}");
    assert!(!left.contains("CREATE on the schema"), "{left}");
    assert_eq!(
        common::pg_rows(
            &mut env.pg(),
            &format!(
                "SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a \
                         WHERE c.relname = 'pf_tenants' AND a.grantee = '{web}'::regrole)::text, \
                        (SELECT count(*) FROM pg_attribute t, aclexplode(t.attacl) a \
                         WHERE t.attrelid = 'pf_audit_log'::regclass AND a.grantee = '{web}'::regrole)::text, \
                        (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a \
                         WHERE n.nspname = 'public' AND a.grantee = '{web}'::regrole)::text"
            )
        ),
        [["0", "0", "0"]]
    );
    env.system_exec(&format!(
        "ALTER ROLE {web} NOBYPASSRLS; REVOKE {owner} FROM {web}"
    ));
    ok(&env, &role, &["grants", "check"]);
    ok(&env, &role, &["doctor"]);

    // Predefined roles that reach past every grant, held by the role or a login.
    env.system_exec(&format!(
        "GRANT pg_write_all_data TO {web}; GRANT pg_read_all_data TO {app}"
    ));
    drift(
        &env,
        &role,
        &[
            format!(
                "{web}, a member of {app}, is a member of pg_write_all_data: it reaches past every grant (REVOKE pg_write_all_data FROM {web})"
            ),
            format!(
                "is a member of pg_read_all_data: it reaches past every grant (REVOKE pg_read_all_data FROM {app})"
            ),
        ],
    );
    env.system_exec(&format!(
        "REVOKE pg_write_all_data FROM {web}; REVOKE pg_read_all_data FROM {app}"
    ));
    ok(&env, &role, &["grants", "check"]);
}

/// Objects of the schema pathfinder-db did not make (F12): a view over
/// pf_users granted to the application reads every user's row (it runs
/// with its owner's rights), so does one granted to PUBLIC, or a SECURITY
/// DEFINER function anyone may execute; a sequence granted to it is beyond
/// what it needs. A function running with its caller's rights and a
/// security_invoker view are left alone. Apply revokes; check passes.
#[test]
fn views_functions_and_sequences_not_the_tools_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let (env, role) = granted(&server, "lprivviews");
    let app = &role.name;
    env.system_exec(&format!(
        "INSERT INTO pf_users (id, username, email, password_hash) VALUES ('u-a', 'a', 'a@x', 'x'); \
         CREATE VIEW v_users AS SELECT * FROM pf_users; GRANT SELECT ON v_users TO {app}; \
         CREATE VIEW v_public AS SELECT id FROM pf_users; GRANT SELECT ON v_public TO PUBLIC; \
         CREATE VIEW v_invoker WITH (security_invoker) AS SELECT id FROM pf_users; \
         GRANT SELECT ON v_invoker TO PUBLIC; \
         CREATE FUNCTION count_users() RETURNS bigint SECURITY DEFINER LANGUAGE sql \
           AS 'SELECT count(*) FROM pf_users'; \
         CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
         CREATE SEQUENCE s1; GRANT USAGE ON SEQUENCE s1 TO {app}"
    ));
    assert_eq!(
        as_app(&env, &role, None, "SELECT count(*) FROM v_users").unwrap(),
        [["1"]]
    );
    let text = drift(
        &env,
        &role,
        &[
            "extra privilege: SELECT on v_users\n".into(),
            "extra privilege: SELECT on v_public (granted to PUBLIC)".into(),
            "extra privilege: EXECUTE on count_users() (granted to PUBLIC)".into(),
            "extra privilege: USAGE on s1\n".into(),
        ],
    );
    assert!(
        !text.contains("v_invoker") && !text.contains("one()"),
        "{text}"
    );
    ok(&env, &role, &["grants", "apply"]);
    ok(&env, &role, &["grants", "check"]);
    for sql in [
        "SELECT count(*) FROM v_users",
        "SELECT count(*) FROM v_public",
        "SELECT count_users()",
        "SELECT nextval('s1')",
    ] {
        let err = as_app(&env, &role, None, sql).unwrap_err();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    assert_eq!(as_app(&env, &role, None, "SELECT one()").unwrap(), [["1"]]);
}

// ---------------------------------------------------------------------------
// SQLite: no roles; files private to their owner whatever the umask.

/// The binary run with umask 000 (anything the process creates without an
/// explicit mode would be readable and writable by everyone).
fn with_open_umask(env: &Env, args: &[&str]) -> Output {
    let out = open_umask_command(env, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn open_umask_command(env: &Env, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(env.path())
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_pathfinder-db"))
        .arg("--database-url")
        .arg(&env.url)
        .args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PATHFINDER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Under umask 000 the main file, the tenants' folder, a tenant file (its
/// archives are tables inside it), their -wal and -shm files, the lock
/// files, an export and a master key file are all created readable by their
/// owner only; `grants check` says SQLite has no roles and checks the files;
/// a file opened by hand is found and `grants apply` makes it private again.
#[cfg(unix)]
#[test]
fn sqlite_files_are_private_whatever_the_umask_sqlite() {
    let env = Env::sqlite();
    with_open_umask(&env, &["provision", "alice"]);
    with_open_umask(&env, &["policies", "apply", "--dir", &policies_dir()]);
    old_analytics(&env, "alice", "a-old");
    with_open_umask(&env, &["retention", "run", "--all"]);
    // The archive is a table in alice's file, not a file of its own.
    assert_eq!(
        common::sqlite_rows(
            &common::sqlite_tenant_file(env.path(), "alice"),
            "SELECT count(*) FROM pf_user_alice_career_analytics_archive"
        ),
        [["1"]]
    );
    let export = env.path().join("alice.pfx");
    with_open_umask(
        &env,
        &["export", "alice", "--out", export.to_str().unwrap()],
    );
    let key = env.path().join("master.key");
    with_open_umask(
        &env,
        &["keys", "new-master-key", "--out", key.to_str().unwrap()],
    );

    // While a command holds the main file open, its -wal and -shm exist:
    // SQLite gives them the main file's mode.
    let main = env.main_file().display().to_string();
    let (wal, shm) = (format!("{main}-wal"), format!("{main}-shm"));
    let mut follower = open_umask_command(&env, &["audit", "--follow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(Path::new(&wal).exists() && Path::new(&shm).exists())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mode_now = |p: &str| Path::new(p).exists().then(|| mode(Path::new(p)));
    let modes = (mode_now(&wal), mode_now(&shm));
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(
        modes,
        (Some(0o600), Some(0o600)),
        "the main file's -wal and -shm"
    );

    let tenant_dir = env.tenant_dir();
    assert_eq!(mode(&tenant_dir), 0o700, "the tenants' folder");
    let mut files = vec![env.main_file(), export, key];
    for entry in std::fs::read_dir(&tenant_dir).unwrap() {
        files.push(entry.unwrap().path());
    }
    for suffix in ["-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", env.main_file().display()));
        if p.exists() {
            files.push(p);
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["pathfinder.db", "alice.db", "alice.pfx", "master.key"] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert!(
        names.iter().all(|n| !n.contains("archive")),
        "no file per archive: {names:?}"
    );
    // A tenant's lock file lives while its lock is held (0600, checked
    // in the unit tests), and goes with it.
    assert!(
        names.iter().all(|n| !n.ends_with(".lock")),
        "no lock file left behind: {names:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // grants check: no roles, the files checked.
    let out = with_open_umask(&env, &["grants", "check"]);
    assert!(
        stderr(&out).contains("SQLite has no roles"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("all readable by their owner only"),
        "{}",
        stdout(&out)
    );
    assert!(
        env.ok(&["doctor"])
            .contains("ok    app role: SQLite has no roles")
    );

    // A file opened by hand is found, and made private again.
    use std::os::unix::fs::PermissionsExt;
    let alice = common::sqlite_tenant_file(env.path(), "alice");
    std::fs::set_permissions(&alice, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&tenant_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.run(&["grants", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("file {} is mode 0644", alice.display())),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.run(&["doctor"]).status.code(), Some(1));
    env.ok(&["grants", "apply"]);
    assert_eq!(mode(&alice), 0o600);
    assert_eq!(mode(&tenant_dir), 0o700);
    env.ok(&["grants", "check"]);
}

/// pathfinder-db connecting as a plain owner (not a superuser, which would
/// bypass row-level security anyway): its jobs still see and change every
/// user's rows (the policies are not forced on the owner), while the
/// application sees none without a user. An owner that may not create roles
/// gets an error from `grants apply --create-role`, and the failure is
/// audited; once a DBA made the role, `grants apply` grants it everything.
#[test]
fn a_plain_owner_is_exempt_and_a_failed_apply_is_audited_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "lprivowner");
    let owner = AppRole::new(&server, &env);
    let app = AppRole::new(&server, &env);
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {} LOGIN", owner.name))
        .unwrap();
    env.system_exec(&format!("GRANT CREATE ON SCHEMA public TO {}", owner.name));
    let mut url = url::Url::parse(&env.url).unwrap();
    url.set_username(&owner.name).unwrap();
    let as_owner = |args: &[&str]| -> Output {
        common::pathfinder(env.path())
            .arg("--database-url")
            .arg(url.as_str())
            .env("PATHFINDER_APP_ROLE", &app.name)
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_owner(&["provision", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // No CREATEROLE: the error, audited.
    let out = as_owner(&["grants", "apply", "--create-role"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("permission denied to create role"),
        "{}",
        stderr(&out)
    );
    let failures = common::pg_rows(
        &mut env.pg(),
        "SELECT entity_id, error_message IS NOT NULL FROM pf_audit_log WHERE action = 'grants.apply'",
    );
    assert_eq!(failures, [[app.name.clone(), "t".to_string()]]);

    // A DBA makes the role; the owner grants it what it needs.
    admin
        .batch_execute(&format!("CREATE ROLE {} NOLOGIN", app.name))
        .unwrap();
    for args in [&["grants", "apply"][..], &["grants", "check"][..]] {
        let out = as_owner(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    // The owner's own session sees and changes every user's rows.
    let mut owner_client = postgres::Client::connect(url.as_str(), postgres::NoTls).unwrap();
    owner_client
        .batch_execute(
            "INSERT INTO pf_users (id, username, email, password_hash) VALUES \
               ('u-alice', 'alice', 'alice@example.com', 'x'), ('u-bob', 'bob', 'bob@example.com', 'x'); \
             INSERT INTO pf_user_sessions (id, user_id, refresh_token, expires_at) VALUES \
               ('s-old', 'u-bob', 't1', CURRENT_TIMESTAMP - INTERVAL '2 days'), \
               ('s-new', 'u-alice', 't2', CURRENT_TIMESTAMP + INTERVAL '2 days')",
        )
        .unwrap();
    let count = |client: &mut postgres::Client, sql: &str| -> i64 {
        client.query_one(sql, &[]).unwrap().get(0)
    };
    assert_eq!(count(&mut owner_client, "SELECT count(*) FROM pf_users"), 2);
    // Its jobs too: the purge finds bob's expired session without any user set.
    let out = as_owner(&["sessions", "purge"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        count(&mut owner_client, "SELECT count(*) FROM pf_user_sessions"),
        1
    );
    // The application, without a user: nothing.
    assert_eq!(
        as_app(&env, &app, None, "SELECT count(*) FROM pf_users").unwrap(),
        [["0"]]
    );
    assert_eq!(
        as_app(
            &env,
            &app,
            Some("u-alice"),
            "SELECT id FROM pf_user_sessions"
        )
        .unwrap(),
        [["s-new"]]
    );
}
