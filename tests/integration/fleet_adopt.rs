//! `adopt` and `doctor` over a fleet: unregistered tenant tables on any
//! member database are found, adopted where they are and registered on that
//! member; a member that cannot be read is named while the others are
//! adopted; SQLite tenant files in member folders that no registry row owns
//! are reported.

use serde_json::Value as Json;

use crate::common::{Env, PgDatabase, pg_rows, postgres_url, usernames};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The entry of `list` (tenants or failed) for `user`.
fn entry(list: &Json, user: &str) -> Json {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|t| t["username"] == user)
        .cloned()
        .unwrap_or_else(|| panic!("no {user} in {list}"))
}

/// The tables pathfinder-db's version 1 gives `user`, made by hand on `db`.
fn render_on(env: &Env, db: &PgDatabase, user: &str) {
    let ddl = env.ok(&["render", user, "--to", "1", "--dialect", "postgres"]);
    db.client()
        .batch_execute(&ddl)
        .expect("run the rendered DDL");
}

fn tenant_tables(client: &mut postgres::Client, key: &str) -> usize {
    pg_rows(
        client,
        &format!(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'pf\\_user\\_{key}\\_%'"
        ),
    )
    .len()
}

fn registered_on(env: &Env, user: &str) -> String {
    env.json(&["where", user])["database"]
        .as_str()
        .unwrap_or_else(|| panic!("no database for {user}"))
        .to_string()
}

#[test]
fn postgres_members_tenant_tables_are_adopted_where_they_are() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "adoptcat");
    let m1 = PgDatabase::create(&server, "adoptm1");
    let m2 = PgDatabase::create(&server, "adoptm2");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "m1", &m1.url]);
    env.ok(&["databases", "add", "m2", &m2.url]);

    // dave: made by hand on m1. erin: provisioned on m2, then her registry
    // row lost (her history table says version latest). cat: by hand on the
    // catalog. twin: the same tables on both members.
    render_on(&env, &m1, "dave");
    env.ok(&["--database", "m2", "provision", "erin"]);
    let latest = env.json(&["where", "erin"]);
    assert_eq!(latest["database"], "m2", "{latest}");
    env.system_exec("DELETE FROM pf_tenants WHERE username = 'erin'");
    let cat_ddl = env.ok(&["render", "cat", "--to", "1", "--dialect", "postgres"]);
    env.system_exec(&cat_ddl);
    render_on(&env, &m1, "twin");
    render_on(&env, &m2, "twin");
    m1.client()
        .batch_execute(
            "INSERT INTO pf_user_dave_experiences (id, title, company, start_date) \
             VALUES ('e1', 'Engineer', 'Acme', '2020-01-01')",
        )
        .unwrap();

    // A dry run finds each on its member and changes nothing.
    let (code, doc) = env.json_run(&["adopt", "--scan", "--dry-run"]);
    assert_eq!(
        code,
        Some(3),
        "twin is refused, the others would be adopted: {doc}"
    );
    assert_eq!(usernames(&doc["tenants"]), ["cat", "dave", "erin"], "{doc}");
    assert_eq!(entry(&doc["tenants"], "dave")["database"], "m1", "{doc}");
    assert_eq!(entry(&doc["tenants"], "erin")["database"], "m2", "{doc}");
    assert_eq!(
        entry(&doc["tenants"], "cat")["database"],
        "catalog",
        "{doc}"
    );
    assert_eq!(entry(&doc["tenants"], "dave")["version"], 1, "{doc}");
    let erin_version = entry(&doc["tenants"], "erin")["version"].as_i64().unwrap();
    assert!(erin_version > 1, "erin's own history decides: {doc}");
    assert_eq!(usernames(&doc["failed"]), ["twin"], "{doc}");
    let twin = entry(&doc["failed"], "twin")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        twin.contains("m1, m2") && twin.contains("--database"),
        "{twin}"
    );
    assert_eq!(env.json(&["tenants"])["tenants"], Json::Array(vec![]));
    let text = env.run(&["adopt", "--scan", "--dry-run"]);
    assert!(
        stdout(&text).contains("would adopt dave at version 1 on member m1"),
        "{}",
        stdout(&text)
    );
    assert_eq!(
        tenant_tables(&mut m1.client(), "dave"),
        9,
        "no history table in a dry run"
    );

    // adopt --scan: each registered on its member, its history written there.
    let out = env.run(&["adopt", "--scan"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("twin"), "{}", stderr(&out));
    assert_eq!(registered_on(&env, "dave"), "m1");
    assert_eq!(registered_on(&env, "erin"), "m2");
    assert_eq!(registered_on(&env, "cat"), "catalog");
    assert_eq!(
        pg_rows(
            &mut m1.client(),
            "SELECT version FROM pf_user_dave_schema_history"
        ),
        vec![vec!["1".to_string()]]
    );
    assert_eq!(
        tenant_tables(&mut env.pg(), "dave"),
        0,
        "nothing of dave is made on the catalog"
    );
    let tenants = env.json(&["tenants"]);
    let erin = entry(&tenants["tenants"], "erin");
    assert_eq!(erin["status"], "active", "{erin}");
    assert_eq!(
        erin["schema_version"].as_i64(),
        Some(erin_version),
        "{erin}"
    );
    // The audit rows are in the catalog.
    let audited = env.system_rows(
        "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.adopt' \
         AND entity_id IN ('dave', 'erin', 'cat') AND response_status = 200",
    );
    assert_eq!(audited[0][0], "3");
    let verified = env.run(&["verify", "dave", "erin", "cat"]);
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    // dave's row is where it was, reached through the registry.
    let export = env.path().join("dave.jsonl");
    env.ok(&["export", "dave", "--out", export.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&export).unwrap().contains("Acme"),
        "the export of dave reads m1"
    );

    // twin, named without --database: refused on one line naming the members.
    let out = env.run(&["adopt", "twin"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("m1, m2") && err.contains("--database") && err.trim().lines().count() == 1,
        "{err}"
    );
    // Named with --database: adopted on that member; the other copy is a stray.
    let out = env.ok(&["--database", "m2", "adopt", "twin"]);
    assert!(
        out.contains("adopted twin at version 1 on member m2"),
        "{out}"
    );
    assert_eq!(registered_on(&env, "twin"), "m2");
    let doctor = env.run(&["doctor"]);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        stdout(&doctor).contains("pf_user_twin_experiences (member m1)"),
        "{}",
        stdout(&doctor)
    );
    // A name whose tables are nowhere: a usage error, nothing registered.
    let out = env.run(&["adopt", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("any member database"),
        "{}",
        stderr(&out)
    );
    // --database naming no member is a usage error.
    let out = env.run(&["--database", "nope", "adopt", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Nothing left to find; the adopted tenants migrate like any other.
    let out = env.ok(&["adopt", "--scan"]);
    assert!(out.contains("in the catalog and its members"), "{out}");
    env.ok(&["migrate", "--all"]);
    let verified = env.run(&["verify", "--all"]);
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
}

#[test]
fn postgres_adopt_scan_names_an_unreachable_member_and_adopts_the_others() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "adoptdown");
    let m1 = PgDatabase::create(&server, "adoptdm1");
    let m2 = PgDatabase::create(&server, "adoptdm2");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "m1", &m1.url]);
    env.ok(&["databases", "add", "m2", &m2.url]);
    render_on(&env, &m1, "dave");
    render_on(&env, &m1, "fred");
    // m2 goes away: its stored URL now points at a port nothing listens on.
    env.system_exec(
        "UPDATE pf_databases SET url = 'postgres://postgres@127.0.0.1:9/none' WHERE name = 'm2'",
    );

    // A dry run names m2 and finds m1's tenants.
    let (code, doc) = env.json_run(&["adopt", "--scan", "--dry-run"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(usernames(&doc["tenants"]), ["dave", "fred"], "{doc}");
    assert_eq!(doc["unreachable"][0]["database"], "m2", "{doc}");
    assert!(
        doc["unreachable"][0]["error"]
            .as_str()
            .unwrap()
            .contains("member m2"),
        "{doc}"
    );

    // A named user on the member that answers is adopted.
    let out = env.ok(&["adopt", "fred"]);
    assert!(
        out.contains("adopted fred at version 1 on member m1"),
        "{out}"
    );
    // One whose tables are not on the members that answer: the error names m2.
    let out = env.run(&["adopt", "gina"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("member m2") && stderr(&out).contains("--database"),
        "{}",
        stderr(&out)
    );

    // The scan adopts dave and exits 3 naming m2.
    let out = env.run(&["adopt", "--scan"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("adopted dave"), "{}", stdout(&out));
    assert!(stderr(&out).contains("member m2"), "{}", stderr(&out));
    assert_eq!(registered_on(&env, "dave"), "m1");
    // Narrowed to m1 with --database, m2 is not read: nothing left, exit 0.
    let out = env.ok(&["--database", "m1", "adopt", "--scan"]);
    assert!(out.contains("on member m1"), "{out}");
}

#[test]
fn sqlite_doctor_and_adopt_report_tenant_files_in_member_folders() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let disk_a = env.path().join("disk_a");
    env.ok(&["databases", "add", "disk_a", disk_a.to_str().unwrap()]);
    env.ok(&["--database", "disk_a", "provision", "alice"]);
    env.ok(&["provision", "bob"]);
    assert!(disk_a.join("alice.db").exists());
    // Files where the registry puts them are no strays.
    let out = env.run(&["doctor"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A tenant file nobody registered, in the member's folder; and a copy of
    // bob's file (registered on the catalog) in the member's folder.
    let ghost = disk_a.join("ghost.db");
    std::fs::copy(env.tenant_dir().join("bob.db"), &ghost).unwrap();
    std::fs::copy(env.tenant_dir().join("bob.db"), disk_a.join("bob.db")).unwrap();
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let catalog = text
        .lines()
        .find(|l| l.contains("catalog:"))
        .unwrap_or_else(|| panic!("no catalog line: {text}"));
    assert!(catalog.starts_with("fail"), "{text}");
    assert!(
        catalog.contains(&format!("{} (member disk_a)", ghost.display())),
        "{text}"
    );
    assert!(
        catalog.contains("tenant bob is registered on catalog"),
        "{text}"
    );
    assert!(!catalog.contains("alice.db"), "{text}");

    // adopt --scan reports the unknown file (not bob's copy: bob is
    // registered) and still adopts the tables in the main file.
    let ddl = env.ok(&["render", "dave", "--to", "1", "--dialect", "sqlite"]);
    env.system_exec(&ddl);
    let (code, doc) = env.json_run(&["adopt", "--scan", "--dry-run"]);
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(usernames(&doc["tenants"]), ["dave"], "{doc}");
    assert_eq!(usernames(&doc["failed"]), ["ghost"], "{doc}");
    let ghost_entry = entry(&doc["failed"], "ghost");
    assert_eq!(ghost_entry["database"], "disk_a", "{doc}");
    assert!(
        ghost_entry["error"]
            .as_str()
            .unwrap()
            .contains("not registered"),
        "{doc}"
    );
    // A SQLite member folder takes no adopted tables: the way is named.
    let out = env.run(&["--database", "disk_a", "adopt", "dave"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("move dave --to disk_a"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["adopt", "--scan"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));
    assert_eq!(registered_on(&env, "dave"), "catalog");
    assert!(env.tenant_dir().join("dave.db").exists());
    // Narrowed to the member: only its files.
    let (code, doc) = env.json_run(&["--database", "disk_a", "adopt", "--scan", "--dry-run"]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(usernames(&doc["failed"]), ["ghost"], "{doc}");
    std::fs::remove_file(&ghost).unwrap();
    std::fs::remove_file(disk_a.join("bob.db")).unwrap();
    let out = env.run(&["doctor"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
