//! A member lost for good: pointed at a copy of it elsewhere (`databases
//! set-url`), or removed with its tenants forgotten (`databases remove
//! --forget-tenants`); both refused while it still answers.

use crate::common::{Env, PgDatabase, pg_rows, postgres_url, sqlite_rows};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn experience(key: &str) -> String {
    format!(
        "INSERT INTO pf_user_{key}_experiences (id, title, company, start_date) VALUES ('e1', 'Engineer', 'Acme', '2019-03-01')"
    )
}

fn status_of(env: &Env, user: &str) -> (String, String) {
    let rows = env.system_rows(&format!(
        "SELECT status, COALESCE(database_name, 'catalog') FROM pf_tenants WHERE username = '{user}'"
    ));
    (rows[0][0].clone(), rows[0][1].clone())
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path, except: &[&str]) {
    std::fs::create_dir(to).unwrap();
    // Private, as the member's was (verify checks the modes).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !except.iter().any(|e| name.starts_with(e)) {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn a_lost_sqlite_member_is_pointed_at_its_copy_or_forgotten() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let disk_a = env.path().join("disk_a");
    let disk_b = env.path().join("disk_b");
    env.ok(&["databases", "add", "disk_a", disk_a.to_str().unwrap()]);
    env.ok(&["databases", "add", "disk_b", disk_b.to_str().unwrap()]);
    env.ok(&["databases", "drain", "catalog"]);
    let made = env.json(&["provision", "a1", "a2", "--database", "disk_a"]);
    assert_eq!(made["tenants"][1]["database"], "disk_a", "{made}");
    // Names that could be no one's are said to be invalid, not looked up;
    // a SQLite member folder takes no `?` options.
    for args in [
        &["where", ""][..],
        &["databases", "drain", ""],
        &["databases", "set-capacity", "Disk_A", "3"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("empty") || stderr(&out).contains("not valid"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let with_options = format!("{}?mode=ro", env.path().join("disk_q").display());
    let out = env.run(&["databases", "add", "disk_q", &with_options]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!env.path().join("disk_q?mode=ro").exists());
    env.ok(&["provision", "b1", "b2", "--database", "disk_b"]);
    let a1 = disk_a.join("a1.db");
    rusqlite::Connection::open(&a1)
        .unwrap()
        .execute_batch(&experience("a1"))
        .unwrap();

    // While the member answers, neither is allowed.
    let copy_a = env.path().join("restored_a");
    copy_folder(&disk_a, &copy_a, &[]);
    let out = env.run(&["databases", "set-url", "disk_a", copy_a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("still answers"), "{}", stderr(&out));
    let out = env.run(&[
        "databases",
        "set-url",
        "disk_a",
        copy_a.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("copy of it"), "{}", stderr(&out));
    let out = env.run(&["databases", "remove", "disk_a", "--forget-tenants", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("answers"), "{}", stderr(&out));
    assert_eq!(status_of(&env, "a1"), ("active".into(), "disk_a".into()));

    // disk_a's disk dies; its copy is restored elsewhere. A folder that is
    // not there is refused and never made; another deployment's folder
    // holding tenants of the same names is not a copy of it.
    std::fs::rename(&disk_a, env.path().join("dead_a")).unwrap();
    let other = Env::sqlite();
    other.ok(&["init"]);
    let other_disk = other.path().join("disk_a");
    other.ok(&["databases", "add", "disk_a", other_disk.to_str().unwrap()]);
    other.ok(&["databases", "drain", "catalog"]);
    other.ok(&["provision", "a1", "a2"]);
    let out = env.run(&[
        "databases",
        "set-url",
        "disk_a",
        other_disk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another deployment"),
        "{}",
        stderr(&out)
    );
    // A folder holding none of its tenants is not its copy either.
    let empty = env.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = env.run(&[
        "databases",
        "set-url",
        "disk_a",
        empty.to_str().unwrap(),
        "--allow-missing",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let nowhere = env.path().join("nowhere");
    let out = env.run(&["databases", "set-url", "disk_a", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!nowhere.exists());
    let moved = env.json(&["databases", "set-url", "disk_a", copy_a.to_str().unwrap()]);
    assert_eq!(moved["tenants"], 2, "{moved}");
    assert_eq!(
        moved["missing"].as_array().map(Vec::len),
        Some(0),
        "{moved}"
    );
    let place = env.json(&["where", "a1"]);
    assert!(
        place["url"]
            .as_str()
            .unwrap_or_default()
            .contains("restored_a")
            || place.to_string().contains("restored_a"),
        "{place}"
    );
    env.ok(&["verify", "--all"]);
    let rows = sqlite_rows(
        &copy_a.join("a1.db"),
        "SELECT title FROM pf_user_a1_experiences",
    );
    assert_eq!(rows, vec![vec!["Engineer".to_string()]]);
    // Pointing it there again changes nothing.
    let again = env.ok(&["databases", "set-url", "disk_a", copy_a.to_str().unwrap()]);
    assert!(again.contains("already"), "{again}");

    // disk_b dies and its only copy lacks b2: refused, naming b2, unless
    // --allow-missing; b2 is then missing until deprovisioned.
    let copy_b = env.path().join("restored_b");
    copy_folder(&disk_b, &copy_b, &["b2."]);
    std::fs::rename(&disk_b, env.path().join("dead_b")).unwrap();
    let out = env.run(&["databases", "set-url", "disk_b", copy_b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("b2") && !stderr(&out).contains("b1"),
        "{}",
        stderr(&out)
    );
    let moved = env.json(&[
        "databases",
        "set-url",
        "disk_b",
        copy_b.to_str().unwrap(),
        "--allow-missing",
    ]);
    assert_eq!(moved["missing"], serde_json::json!(["b2"]), "{moved}");
    env.ok(&["deprovision", "b2", "--yes"]);
    env.ok(&["verify", "--all"]);

    // Then disk_b is lost for good, with b1 on it and a1's move to it
    // half-way (the source still authoritative).
    env.system_exec(
        "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to disk_b' WHERE username = 'a1'",
    );
    std::fs::rename(&copy_b, env.path().join("dead_b2")).unwrap();
    // Without a terminal and without --yes it asks and changes nothing.
    let out = env.run(&["databases", "remove", "disk_b", "--forget-tenants"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("b1") && stderr(&out).contains("--yes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(status_of(&env, "b1"), ("active".into(), "disk_b".into()));
    // Without --forget-tenants it is refused as before.
    let out = env.run(&["databases", "remove", "disk_b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let gone = env.json(&["databases", "remove", "disk_b", "--forget-tenants", "--yes"]);
    assert_eq!(
        gone["tenants"],
        serde_json::json!([
            {"username": "b1", "outcome": "forgotten"},
            {"username": "a1", "outcome": "move_cancelled"},
        ]),
        "{gone}"
    );
    assert_eq!(
        status_of(&env, "b1"),
        ("deprovisioned".into(), "catalog".into())
    );
    assert_eq!(status_of(&env, "a1"), ("active".into(), "disk_a".into()));
    let members: Vec<String> = env.json(&["databases", "list"])["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, vec!["catalog", "disk_a"]);
    let audit = env.system_rows(
        "SELECT action, entity_id FROM pf_audit_log WHERE action IN ('tenant.forget', 'tenant.move.cancel', 'database.remove', 'database.set-url') ORDER BY action, entity_id",
    );
    let audit: Vec<String> = audit.iter().map(|r| format!("{} {}", r[0], r[1])).collect();
    assert_eq!(
        audit,
        vec![
            "database.remove disk_b",
            "database.set-url disk_a",
            "database.set-url disk_b",
            "tenant.forget b1",
            "tenant.move.cancel a1",
        ]
    );
    env.assert_member_counts_agree();
    // The forgotten folder coming back is not taken as a new member (its
    // files would come back as tenants); a member removed the usual way
    // can be added again.
    let back = env.path().join("dead_b2");
    let out = env.run(&["databases", "add", "disk_b2", back.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("marked"), "{}", stderr(&out));
    let spare = env.path().join("spare");
    env.ok(&["databases", "add", "spare", spare.to_str().unwrap()]);
    env.ok(&["databases", "remove", "spare"]);
    env.ok(&["databases", "add", "spare", spare.to_str().unwrap()]);
    env.ok(&["databases", "remove", "spare"]);
    // Left-overs on a member are listed by doctor, saying what they are: a
    // forgotten tenant's file put back, a stopped move's partial copy.
    let forgotten_file = copy_a.join("b1.db");
    let partial = copy_a.join("zz.db.moving");
    std::fs::copy(copy_a.join("a2.db"), &forgotten_file).unwrap();
    std::fs::write(&partial, b"").unwrap();
    let catalog = env.doctor_check("catalog");
    let said = catalog["detail"].as_str().unwrap_or_default();
    assert!(
        said.contains("b1.db") && said.contains("deprovisioned") && said.contains("zz.db.moving"),
        "{catalog}"
    );
    std::fs::remove_file(&forgotten_file).unwrap();
    std::fs::remove_file(&partial).unwrap();
    // b1 starts afresh where placement puts it; a1 kept its row.
    env.ok(&["provision", "b1"]);
    assert_eq!(status_of(&env, "b1"), ("active".into(), "disk_a".into()));
    env.ok(&["verify", "--all"]);
    let rows = sqlite_rows(
        &copy_a.join("a1.db"),
        "SELECT count(*) FROM pf_user_a1_experiences",
    );
    assert_eq!(rows[0][0], "1");

    // A member folder left empty and unmarked (the mount point of a disk
    // that is not mounted) is a member that cannot be reached: nothing lands
    // there. A provisioning that failed on it (nothing made) is placed
    // afresh by the next `provision` that names no member.
    let disk_c = env.path().join("disk_c");
    env.ok(&["databases", "add", "disk_c", disk_c.to_str().unwrap()]);
    std::fs::remove_file(disk_c.join(".pathfinder-member")).unwrap();
    let out = env.run(&["provision", "z1", "--database", "disk_c"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not marked"), "{}", stderr(&out));
    assert_eq!(status_of(&env, "z1"), ("failed".into(), "disk_c".into()));
    env.ok(&["provision", "z1"]);
    assert_eq!(status_of(&env, "z1"), ("active".into(), "disk_a".into()));
    assert_eq!(std::fs::read_dir(&disk_c).unwrap().count(), 0);

    // A copy older than a migration is recorded at its own version, and
    // `migrate --all` brings it up again.
    let disk_v = env.path().join("disk_v");
    env.ok(&["databases", "add", "disk_v", disk_v.to_str().unwrap()]);
    env.ok(&["provision", "v1", "--to", "3", "--database", "disk_v"]);
    let backup = env.path().join("backup_v");
    copy_folder(&disk_v, &backup, &[]);
    env.ok(&["migrate", "--all"]);
    std::fs::rename(&disk_v, env.path().join("dead_v")).unwrap();
    let moved = env.json(&["databases", "set-url", "disk_v", backup.to_str().unwrap()]);
    assert_eq!(moved["older"][0]["username"], "v1", "{moved}");
    assert_eq!(moved["older"][0]["version"], 3, "{moved}");
    let migrated = env.json(&["migrate", "--all"]);
    assert_eq!(
        migrated["migrated"].as_array().map(Vec::len),
        Some(1),
        "{migrated}"
    );
    env.ok(&["verify", "--all"]);

    // Backup verification on a clone: the clone's catalog names
    // production's folders until each member is pointed at its restored
    // copy with --clone; then a changed row in the copy is found.
    let prints = env.path().join("prod.json");
    env.ok(&["fingerprint", "--all", "--out", prints.to_str().unwrap()]);
    let clone = crate::common::tempdir();
    for f in ["pathfinder.db", "pathfinder.db-wal"] {
        let from = env.path().join(f);
        if from.exists() {
            std::fs::copy(&from, clone.path().join(f)).unwrap();
        }
    }
    let clone_a = clone.path().join("restored_a");
    copy_folder(&copy_a, &clone_a, &[]);
    let in_clone = |args: &[&str]| {
        crate::common::pathfinder_std(clone.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = in_clone(&["databases", "set-url", "disk_a", clone_a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--clone"), "{}", stderr(&out));
    let out = in_clone(&[
        "databases",
        "set-url",
        "disk_a",
        clone_a.to_str().unwrap(),
        "--clone",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let compare = ["fingerprint", "--compare", prints.to_str().unwrap()];
    let out = in_clone(&compare);
    assert!(
        out.status.success(),
        "the copy holds the same rows: {}",
        stderr(&out)
    );
    rusqlite::Connection::open(clone_a.join("a1.db"))
        .unwrap()
        .execute_batch("UPDATE pf_user_a1_experiences SET title = 'changed'")
        .unwrap();
    let out = in_clone(&compare);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the changed row in the copy is found"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Production's file is untouched.
    let rows = sqlite_rows(
        &copy_a.join("a1.db"),
        "SELECT title FROM pf_user_a1_experiences",
    );
    assert_eq!(rows, vec![vec!["Engineer".to_string()]]);
}

#[test]
fn a_lost_postgres_member_is_pointed_at_its_copy_or_forgotten() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "lostcat");
    let m1 = PgDatabase::create(&server, "lostm1");
    let m2 = PgDatabase::create(&server, "lostm2");
    let copy = PgDatabase::create(&server, "lostcopy");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "m1", &m1.url]);
    env.ok(&["databases", "add", "m2", &m2.url]);
    env.ok(&["databases", "drain", "catalog"]);
    env.ok(&["provision", "p1", "p2", "--database", "m1"]);
    env.ok(&["provision", "q1", "q2", "--database", "m2"]);
    m1.client().batch_execute(&experience("p1")).unwrap();

    // m1's copy: its tables dumped into another database, as a restore
    // would bring them (schema only and rows, through pg_dump).
    let dump = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "pg_dump --no-owner '{}' | psql -q -v ON_ERROR_STOP=1 '{}'",
            m1.url, copy.url
        ))
        .output()
        .expect("pg_dump | psql");
    assert!(dump.status.success(), "{}", stderr(&dump));
    let out = env.run(&["databases", "set-url", "m1", &copy.url]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("still answers"), "{}", stderr(&out));
    // A password in the new URL is refused and not shown.
    let with_password = copy.url.replacen("postgres@", "postgres:hunter2@", 1);
    let out = env.run(&["databases", "set-url", "m1", &with_password, "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"));
    // The catalog is not a member's copy.
    let out = env.run(&["databases", "set-url", "m1", &env.url, "--force"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("catalog"), "{}", stderr(&out));

    // --force is for the same database under another address, never a copy.
    let out = env.run(&["databases", "set-url", "m1", &copy.url, "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("copy of it"), "{}", stderr(&out));
    let respelled = m1.url.replacen("127.0.0.1:5432", "127.0.0.1", 1);
    let same = env.json(&["databases", "set-url", "m1", &respelled, "--force"]);
    assert_eq!(same["tenants"], 2, "{same}");
    env.ok(&["databases", "set-url", "m1", &m1.url, "--force"]);
    // Another deployment's member is never taken for a copy of ours.
    let other = Env::postgres(&server, "lostother");
    let other_member = PgDatabase::create(&server, "lostotherm");
    other.ok(&["init"]);
    other.ok(&["databases", "add", "m1", &other_member.url]);
    other.ok(&["databases", "drain", "catalog"]);
    other.ok(&["provision", "p1", "p2"]);
    // The same database under another spelling of its URL is not a second member.
    assert_ne!(respelled, m1.url);
    let out = env.run(&["databases", "add", "m1b", &respelled]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("member already"), "{}", stderr(&out));

    // m1's server is lost (its database gone), and an empty database is
    // made in its place: that is not the member. Its tenants fail as on a
    // member that is down (nothing is placed or judged missing there), and
    // the hint never says to create the database.
    let m1_name = m1.url.rsplit('/').next().unwrap().to_string();
    drop(m1);
    let out = env.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("set-url") && !stderr(&out).contains("createdb"),
        "{}",
        stderr(&out)
    );
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {m1_name}"))
        .unwrap();
    let out = env.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not the member"), "{}", stderr(&out));
    let out = env.run(&["provision", "newcomer", "--database", "m1"]);
    assert!(!out.status.success());
    let doctor = env.doctor_check("registry");
    assert!(
        doctor["detail"]
            .to_string()
            .contains("3 on members that cannot be read were not checked"),
        "{doctor}"
    );
    assert!(
        !doctor.to_string().contains("deprovision"),
        "doctor does not advise deprovisioning tenants of a database that is not the member: {doctor}"
    );
    let out = env.run(&["databases", "set-url", "m1", &other_member.url]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another deployment"),
        "{}",
        stderr(&out)
    );
    // Nor is another member of this deployment, under any spelling.
    let m2_respelled = m2.url.replacen("127.0.0.1:5432", "127.0.0.1", 1);
    let out = env.run(&[
        "databases",
        "set-url",
        "m1",
        &m2_respelled,
        "--allow-missing",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("member m2"), "{}", stderr(&out));
    // The empty one in its place does not count as the member answering.
    let moved = env.json(&["databases", "set-url", "m1", &copy.url]);
    assert_eq!(moved["tenants"], 2, "{moved}");
    admin
        .batch_execute(&format!("DROP DATABASE {m1_name}"))
        .unwrap();
    env.ok(&["verify", "--all"]);
    let rows = pg_rows(
        &mut copy.client(),
        "SELECT title FROM pf_user_p1_experiences",
    );
    assert_eq!(rows, vec![vec!["Engineer".to_string()]]);
    assert_eq!(env.json(&["where", "p1"])["database"], "m1");

    // q2's move from m1 (now `copy`) to m2 had switched when m2 was lost:
    // `copy` still holds q2, so it goes back there. q1 is forgotten.
    env.ok(&["provision", "q3", "--database", "m1"]);
    env.system_exec(
        "UPDATE pf_tenants SET database_name = 'm2', status = 'moving', claimed_by = 'move from m1' WHERE username = 'q3'",
    );
    copy.client()
        .batch_execute(&experience("q3"))
        .expect("a row in q3");
    drop(m2);
    let gone = env.json(&["databases", "remove", "m2", "--forget-tenants", "--yes"]);
    assert_eq!(
        gone["tenants"],
        serde_json::json!([
            {"username": "q1", "outcome": "forgotten"},
            {"username": "q2", "outcome": "forgotten"},
            {"username": "q3", "outcome": "back_to_source", "database": "m1"},
        ]),
        "{gone}"
    );
    assert_eq!(status_of(&env, "q3"), ("active".into(), "m1".into()));
    assert_eq!(
        status_of(&env, "q1"),
        ("deprovisioned".into(), "catalog".into())
    );
    env.ok(&["verify", "--all"]);
    env.assert_member_counts_agree();
    let rows = pg_rows(
        &mut copy.client(),
        "SELECT count(*) FROM pf_user_q3_experiences",
    );
    assert_eq!(rows[0][0], "1");
    // q1 starts afresh on the member that is left.
    env.ok(&["provision", "q1"]);
    assert_eq!(status_of(&env, "q1"), ("active".into(), "m1".into()));

    // A member removed the usual way can be added again (its stage went
    // with it).
    let spare = PgDatabase::create(&server, "lostspare");
    env.ok(&["databases", "add", "spare", &spare.url]);
    env.ok(&["databases", "remove", "spare"]);
    env.ok(&["databases", "add", "spare", &spare.url]);
}

/// What `databases add` leaves when killed after marking the member and
/// before recording it: the same add run again takes it up; anything more
/// (another member's mark, a file, a tenant table) is still refused.
#[test]
fn an_add_killed_before_it_recorded_the_member_is_taken_up_by_a_rerun() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::sqlite();
    env.ok(&["init"]);
    let deployment = env.system_rows("SELECT id FROM pf_deployment")[0][0].clone();
    let marked = |folder: &str, member: &str, extra: Option<&str>| {
        let path = env.path().join(folder);
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(
            path.join(".pathfinder-member"),
            format!("pathfinder-db member {member} of deployment {deployment}\n"),
        )
        .unwrap();
        if let Some(file) = extra {
            std::fs::write(path.join(file), "x").unwrap();
        }
        path.to_str().unwrap().to_string()
    };
    let killed = marked("disk_k", "disk_k", None);
    let holding = marked("disk_h", "disk_h", Some("h1.db"));
    let other_name = marked("disk_o", "disk_x", None);
    for (name, folder) in [("disk_h", &holding), ("disk_o", &other_name)] {
        let out = env.run(&["databases", "add", name, folder]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("marked"), "{}", stderr(&out));
    }
    assert!(std::path::Path::new(&holding).join("h1.db").exists());
    env.ok(&["databases", "add", "disk_k", &killed]);
    env.ok(&["provision", "k1", "--database", "disk_k"]);
    assert!(std::path::Path::new(&killed).join("k1.db").exists());

    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "killedadd");
    env.ok(&["init"]);
    let deployment = env.system_rows("SELECT id FROM pf_deployment")[0][0].clone();
    let member = |suffix: &str, name: &str| {
        let db = PgDatabase::create(&server, suffix);
        db.client()
            .batch_execute(&format!(
                "CREATE TABLE pf_audit_stage (id TEXT PRIMARY KEY, row_json TEXT NOT NULL);
                 CREATE TABLE pf_member_identity (deployment_id TEXT NOT NULL, member_name TEXT NOT NULL, nonce TEXT);
                 INSERT INTO pf_member_identity (deployment_id, member_name) VALUES ('{deployment}', '{name}')"
            ))
            .unwrap();
        db
    };
    let killed = member("killedaddk", "mk");
    let other_name = member("killedaddo", "mx");
    let holding = member("killedaddh", "mh");
    holding
        .client()
        .batch_execute("CREATE TABLE pf_user_h1_experiences (id TEXT)")
        .unwrap();
    for (name, db) in [("mo", &other_name), ("mh", &holding)] {
        let out = env.run(&["databases", "add", name, &db.url]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("member already"), "{}", stderr(&out));
    }
    env.ok(&["databases", "add", "mk", &killed.url]);
    env.ok(&["provision", "k1", "--database", "mk"]);
    assert_eq!(
        pg_rows(
            &mut killed.client(),
            "SELECT COUNT(*) FROM pf_user_k1_experiences"
        ),
        vec![vec!["0".to_string()]]
    );
}
