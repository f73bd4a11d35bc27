//! The fleet: member databases, placement by capacity, tenant operations
//! routed to the member that holds the tenant, and a member that is down.

use std::collections::HashMap;
use std::process::Stdio;

use crate::common::{Env, PgDatabase, pg_rows, postgres_url, replace_database};

fn counts_by_member(env: &Env) -> HashMap<String, i64> {
    let list = env.json(&["databases", "list"]);
    list["databases"]
        .as_array()
        .expect("an array of members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["tenants"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits (up to 30 s) until the server of `url` takes connections again.
fn wait_for_server(url: &str) {
    for _ in 0..30 {
        if postgres::Client::connect(&replace_database(url, "postgres"), postgres::NoTls).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The usernames `tenants` places on `member`, in its order.
fn tenants_on(env: &Env, member: &str) -> Vec<String> {
    env.json(&["tenants"])["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter(|t| t["database"] == member)
        .map(|t| t["username"].as_str().unwrap().to_string())
        .collect()
}

/// A session on `db` holding `table` in ACCESS EXCLUSIVE mode until it is
/// dropped (or its server stops): DDL and freezes of the table wait for it.
fn hold_lock(db: &PgDatabase, table: &str) -> postgres::Client {
    let mut client = db.client();
    client
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .unwrap();
    client
}

/// Starts pathfinder-db with `args` and waits (up to a minute) until a
/// session on `db` waits for a lock: it has reached the held table.
fn start_until_it_waits(env: &Env, db: &PgDatabase, args: &[&str]) -> std::process::Child {
    let child = env
        .std_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pathfinder-db");
    let mut watcher = db.client();
    let waiting = (0..600).any(|_| {
        let n = pg_rows(
            &mut watcher,
            "SELECT count(*) FROM pg_locks WHERE NOT granted",
        );
        if n[0][0] != "0" {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(waiting, "pathfinder-db {args:?} reaches the locked table");
    child
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sqlite_members_are_folders_that_take_tenants_by_free_capacity() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let disk_a = env.path().join("disk_a");
    let disk_b = env.path().join("disk_b");
    env.ok(&[
        "databases",
        "add",
        "disk_a",
        disk_a.to_str().unwrap(),
        "--capacity",
        "3",
    ]);
    env.ok(&[
        "databases",
        "add",
        "disk_b",
        disk_b.to_str().unwrap(),
        "--capacity",
        "5",
    ]);
    // The same folder twice, or the catalog's own folder, is refused.
    let again = env.run(&["databases", "add", "disk_c", disk_a.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let own = env.tenant_dir();
    let own = env.run(&["databases", "add", "disk_c", own.to_str().unwrap()]);
    assert_eq!(own.status.code(), Some(2), "{}", stderr(&own));
    // A refused add leaves no folder it made: a second member named disk_a.
    let disk_d = env.path().join("disk_d");
    let taken = env.run(&["databases", "add", "disk_a", disk_d.to_str().unwrap()]);
    assert_eq!(taken.status.code(), Some(2), "{}", stderr(&taken));
    assert!(
        !disk_d.exists(),
        "the refused add removed the folder it made"
    );
    env.ok(&["databases", "drain", "catalog"]);

    let users: Vec<String> = (1..=8).map(|n| format!("u{n}")).collect();
    let mut args = vec!["provision"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);
    let counts = counts_by_member(&env);
    assert_eq!(counts.get("disk_a"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("disk_b"), Some(&5), "{counts:?}");
    // A member folder and its files are private like the catalog's: a file
    // opened up by hand is found by `grants check` and made private again.
    {
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::read_dir(&disk_a)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "db"))
            .expect("a tenant file on disk_a");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = env.run(&["grants", "check"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(file.to_str().unwrap()),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        env.ok(&["grants", "apply"]);
        env.ok(&["grants", "check"]);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // `tenants --database` lists one member's; a command that cannot be
    // narrowed refuses the option rather than answer for the whole fleet,
    // and an unknown member is a usage error.
    let on_a = env.json(&["tenants", "--database", "disk_a"]);
    assert_eq!(on_a["tenants"].as_array().map(Vec::len), Some(3), "{on_a}");
    // Capacities change with set-capacity (audited); below the tenants held
    // it says rebalance moves the excess.
    let lowered = env.ok(&["databases", "set-capacity", "disk_b", "2"]);
    assert!(lowered.contains("rebalance"), "{lowered}");
    let capacity_of = |name: &str| {
        env.json(&["databases", "list"])["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["capacity"]
            .clone()
    };
    assert_eq!(capacity_of("disk_b"), 2);
    env.ok(&["databases", "set-capacity", "disk_b", "--unlimited"]);
    assert!(capacity_of("disk_b").is_null());
    env.ok(&["databases", "set-capacity", "disk_b", "5"]);
    assert_eq!(capacity_of("disk_b"), 5);
    let out = env.run(&["databases", "set-capacity", "nosuch", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A server URL on a SQLite catalog, or an empty one, is refused as such.
    for url in ["postgres://postgres@127.0.0.1:5432/postgres", ""] {
        let out = env.run(&["databases", "add", "other", url]);
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(!stderr(&out).contains("mount"), "{}", stderr(&out));
    }
    // `databases add` in a folder without a deployment makes no catalog.
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = crate::common::pathfinder_std(&elsewhere)
        .args([
            "databases",
            "add",
            "x",
            elsewhere.join("x").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!elsewhere.join("pathfinder.db").exists());
    for args in [
        &["doctor", "--database", "disk_a"][..],
        &["rebalance", "--dry-run", "--database", "disk_a"],
        &["tenants", "--database", "nosuch"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(counts.get("catalog"), Some(&0), "{counts:?}");
    let files = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "db")
            })
            .count()
    };
    assert_eq!(files(&disk_a), 3);
    assert_eq!(files(&disk_b), 5);

    // Full: the next tenant is refused, naming the way out.
    let full = env.run(&["provision", "u9"]);
    assert_eq!(
        full.status.code(),
        Some(2),
        "nothing changed: {}",
        stderr(&full)
    );
    assert!(
        stderr(&full).contains("full or draining"),
        "{}",
        stderr(&full)
    );
    assert_eq!(
        env.system_rows("SELECT count(*) FROM pf_tenants WHERE username = 'u9'")[0][0],
        "0"
    );

    // `where` names the member and the tenant's file.
    let place = env.json(&["where", "u1"]);
    let member = place["database"].as_str().unwrap().to_string();
    assert!(member == "disk_a" || member == "disk_b", "{place}");
    let file = std::path::PathBuf::from(place["url"].as_str().unwrap());
    assert!(file.exists(), "{place}");
    // Asked for on the other member, it is there already: said so, with the way there.
    let other = if member == "disk_a" {
        "disk_b"
    } else {
        "disk_a"
    };
    let again = env.ok(&["provision", "u1", "--database", other]);
    assert!(
        again.contains(&format!("on member {member}, not {other}"))
            && again.contains(&format!("move u1 --to {other}")),
        "{again}"
    );

    // Tenant commands reach the member's files.
    env.ok(&["verify", "--all"]);
    env.ok(&["refresh", "--all"]);
    // --database narrows a fleet-wide command to one member.
    let narrowed = env.ok(&["verify", "--all", "--database", "disk_a"]);
    assert!(narrowed.contains("3 tenant(s) verified"), "{narrowed}");
    let status = env.json(&["status", "--database", "disk_a"]);
    assert_eq!(status["tenants"], 3, "{status}");
    let unknown = env.run(&["verify", "--all", "--database", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    let tenants = env.json(&["tenants"]);
    let on: Vec<&str> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["database"].as_str().unwrap())
        .collect();
    assert_eq!(on.iter().filter(|m| **m == "disk_a").count(), 3);

    // A member's folder that is gone (its disk not mounted) is a member that
    // cannot be reached: never made again, its tenants fail with it named,
    // the others are served, and everything is back once it returns.
    let away = env.path().join("disk_a.unmounted");
    std::fs::rename(&disk_a, &away).unwrap();
    let verified = env.run(&["verify", "--all"]);
    assert_eq!(verified.status.code(), Some(3), "{}", stderr(&verified));
    assert!(
        stderr(&verified).contains("member disk_a cannot be reached"),
        "{}",
        stderr(&verified)
    );
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        said.contains("5 tenant(s) verified, 0 with drift"),
        "{said}"
    );
    let refreshed = env.run(&["refresh", "--all"]);
    assert_eq!(refreshed.status.code(), Some(3), "{}", stderr(&refreshed));
    let doctor = env.run(&["doctor"]);
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("member disk_a cannot be reached")
            && said.contains("its 3 tenant(s) were not checked"),
        "{said}"
    );
    assert!(!said.contains("lack tables"), "{said}");
    let disk_e = env.path().join("disk_e");
    env.ok(&["databases", "add", "disk_e", disk_e.to_str().unwrap()]);
    std::fs::remove_dir_all(&disk_e).unwrap();
    let onto_missing = env.run(&["provision", "late", "--database", "disk_e"]);
    assert!(!onto_missing.status.success());
    assert!(
        stderr(&onto_missing).contains("member disk_e cannot be reached"),
        "{}",
        stderr(&onto_missing)
    );
    assert!(
        !disk_e.exists(),
        "a missing member folder is never made again"
    );
    let moved = env.run(&["move", "u1", "--to", "disk_e"]);
    assert!(!moved.status.success());
    assert!(
        stderr(&moved).contains("member disk_e cannot be reached"),
        "{}",
        stderr(&moved)
    );
    let place = env.json(&["where", "u1"]);
    assert_eq!(
        place["status"], "active",
        "refused before the move began: {place}"
    );
    let doctor = env.run(&["doctor"]);
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("`pathfinder-db provision <user>` finishes"),
        "a provisioning that failed before any table is finished by provisioning: {said}"
    );
    // Placement passes over a member that cannot be reached: a_spare (no
    // tenants, first by name) has lost its folder, so a new tenant goes to
    // the next choice, the catalog (opened for it), and no folder is made.
    let spare = env.path().join("a_spare");
    env.ok(&["databases", "add", "a_spare", spare.to_str().unwrap()]);
    std::fs::remove_dir_all(&spare).unwrap();
    env.ok(&["databases", "open", "catalog"]);
    env.ok(&["provision", "early"]);
    assert_eq!(env.json(&["where", "early"])["database"], "catalog");
    assert!(!spare.exists());
    env.assert_member_counts_agree();
    // A registry row naming a member nobody knows (a hand edit) gets no
    // address: the catalog's would send the application to the wrong place.
    let set_member = |m: &str| {
        env.system_exec(&format!(
            "UPDATE pf_tenants SET database_name = {m} WHERE username = 'early'"
        ))
    };
    set_member("'zz'");
    let lost = env.run(&["where", "early"]);
    assert_eq!(lost.status.code(), Some(1), "{}", stderr(&lost));
    assert!(stderr(&lost).contains("member zz"), "{}", stderr(&lost));
    set_member("NULL");
    env.ok(&["deprovision", "early", "--yes"]);
    env.ok(&["databases", "drain", "catalog"]);
    env.ok(&["databases", "remove", "a_spare"]);
    // `databases add` makes the last folder only: not a path whose disk
    // is not there.
    let unmounted = env.path().join("no_disk").join("pathfinder");
    let refused = env.run(&["databases", "add", "disk_f", unmounted.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(!env.path().join("no_disk").exists());
    std::fs::rename(&away, &disk_a).unwrap();
    std::fs::create_dir(&disk_e).unwrap();
    {
        // Private, as `databases add` makes it (verify checks the modes).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&disk_e, std::fs::Permissions::from_mode(0o700)).unwrap();
        // The disk brought back holds what `databases add` put there.
        let marker = disk_e.join(".pathfinder-member");
        std::fs::write(&marker, "pathfinder-db member disk_e\n").unwrap();
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    env.ok(&["provision", "late"]);
    assert!(disk_e.join("late.db").exists());
    env.ok(&["verify", "--all"]);
    env.ok(&["deprovision", "late", "--yes"]);
    env.ok(&["databases", "remove", "disk_e"]);

    // A member with tenants cannot be removed; after they are gone it can.
    let refused = env.run(&["databases", "remove", &member]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    env.ok(&["deprovision", "u1", "--yes"]);
    assert!(!file.exists(), "the tenant file on the member is removed");
}

/// Members without a capacity are all unlimited: they fill evenly, the
/// one holding the fewest tenants first, not the first by name.
#[test]
fn members_without_a_capacity_fill_evenly() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    for disk in ["disk_x", "disk_y", "disk_z"] {
        let folder = env.path().join(disk);
        env.ok(&["databases", "add", disk, folder.to_str().unwrap()]);
    }
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (0..9).map(|n| format!("e{n}")).collect();
    let mut args = vec!["provision"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);
    let counts = counts_by_member(&env);
    for disk in ["disk_x", "disk_y", "disk_z"] {
        assert_eq!(counts.get(disk), Some(&3), "{counts:?}");
    }
}

#[test]
fn postgres_members_take_tenants_by_capacity_and_commands_follow_them() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fleetcat");
    let m1 = PgDatabase::create(&server, "fleetm1");
    let m2 = PgDatabase::create(&server, "fleetm2");
    let m3 = PgDatabase::create(&server, "fleetm3");
    env.ok(&["init"]);

    // A password in the URL is refused and never stored; so is the catalog itself.
    let with_password = m1.url.replacen("postgres@", "postgres:hunter2@", 1);
    let out = env.run(&["databases", "add", "m1", &with_password]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("PATHFINDER_DATABASE_M1_PASSWORD"));
    assert!(!stderr(&out).contains("hunter2"));
    let out = env.run(&["databases", "add", "self", &env.url]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("catalog"), "{}", stderr(&out));

    for (name, db, capacity) in [("m1", &m1, "50"), ("m2", &m2, "30"), ("m3", &m3, "20")] {
        env.ok(&["databases", "add", name, &db.url, "--capacity", capacity]);
    }
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (0..100).map(|n| format!("p{n:03}")).collect();
    let mut args = vec!["provision", "--to", "3", "--jobs", "4"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);
    let counts = counts_by_member(&env);
    assert_eq!(
        (counts["m1"], counts["m2"], counts["m3"], counts["catalog"]),
        (50, 30, 20, 0),
        "placement follows free capacity"
    );
    // The tables are where the registry says, and nowhere else.
    let tables = |db: &PgDatabase| {
        pg_rows(
            &mut db.client(),
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'pf\\_user\\_p%' AND tablename NOT LIKE '%\\_history'",
        )[0][0]
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(tables(&m1), 50 * 9);
    assert_eq!(tables(&m2), 30 * 9);
    assert_eq!(tables(&m3), 20 * 9);
    let catalog_tables = pg_rows(
        &mut env.pg(),
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'pf\\_user\\_p%'",
    );
    assert_eq!(catalog_tables[0][0], "0");

    // Migrate, verify, stats and refresh work across the members.
    let migrated = env.json(&["migrate", "--all"]);
    assert_eq!(
        migrated["migrated"].as_array().map(Vec::len),
        Some(100),
        "{migrated}"
    );
    let verified = env.run(&["verify", "--all"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let stats = env.json(&["stats", "--all"]);
    assert_eq!(
        stats["tenants"].as_array().map(Vec::len),
        Some(100),
        "{stats}"
    );
    env.ok(&["refresh", "p000", "p099"]);
    let place = env.json(&["where", "p000"]);
    assert!(place["url"].as_str().unwrap().contains("fleetm"), "{place}");
    // An explicit member wins over free capacity, and a full one says so.
    let full = env.run(&["provision", "extra", "--database", "m3"]);
    assert!(stderr(&full).contains("full"), "{}", stderr(&full));
    env.ok(&["databases", "open", "catalog"]);
    env.ok(&["provision", "extra", "--database", "catalog"]);
    assert_eq!(env.json(&["where", "extra"])["database"], "catalog");

    // Every change to the members is audited.
    let audit = pg_rows(
        &mut env.pg(),
        "SELECT count(*) FROM pf_audit_log WHERE entity_type = 'database'",
    );
    assert_eq!(audit[0][0], "5", "3 adds, a drain and an open");
}

#[test]
fn concurrent_provisioners_never_overfill_a_member() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fleetrace");
    let m1 = PgDatabase::create(&server, "fleetr1");
    let m2 = PgDatabase::create(&server, "fleetr2");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "r1", &m1.url, "--capacity", "7"]);
    env.ok(&["databases", "add", "r2", &m2.url, "--capacity", "5"]);
    env.ok(&["databases", "drain", "catalog"]);
    let children: Vec<_> = (0..3)
        .map(|p| {
            let mut cmd = env.std_cmd();
            cmd.arg("provision").arg("--jobs").arg("3");
            for n in 0..8 {
                cmd.arg(format!("c{p}_{n}"));
            }
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        let _ = c.wait();
    }
    let counts = counts_by_member(&env);
    assert_eq!(counts["r1"], 7, "{counts:?}");
    assert_eq!(counts["r2"], 5, "{counts:?}");
    let active = pg_rows(
        &mut env.pg(),
        "SELECT database_name, count(*) FROM pf_tenants WHERE status = 'active' GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        active,
        vec![
            vec!["r1".to_string(), "7".into()],
            vec!["r2".into(), "5".into()]
        ]
    );
}

/// A member on a second PostgreSQL server that is stopped: its tenants fail
/// naming it, the others complete, exit 3; after a restart a re-run completes.
#[test]
fn a_member_server_down_fails_only_its_tenants() {
    let Some(server) = postgres_url() else { return };
    let (Ok(second), Ok(ctl)) = (
        std::env::var("PATHFINDER_TEST_POSTGRES_URL2"),
        std::env::var("PATHFINDER_TEST_POSTGRES2_CTL"),
    ) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: PostgreSQL test a_member_server_down_fails_only_its_tenants (set PATHFINDER_TEST_POSTGRES_URL2 and PATHFINDER_TEST_POSTGRES2_CTL to run it)"
        );
        return;
    };
    let control = |action: &str| {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{ctl} {action}"))
            .status()
            .expect("run the second server's control command");
        assert!(status.success(), "{ctl} {action} failed");
    };
    let env = Env::postgres(&server, "fleetdown");
    let near = PgDatabase::create(&server, "fleetnear");
    let far = PgDatabase::create(&second, "fleetfar");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "near", &near.url, "--capacity", "5"]);
    env.ok(&["databases", "add", "far", &far.url, "--capacity", "5"]);
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (0..10).map(|n| format!("d{n}")).collect();
    let mut args = vec!["provision", "--to", "3"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);

    // The member's server stops in the middle of `migrate --all`: one of
    // far's tenants is mid-migration (its DDL waits for a lock held here)
    // when the server goes. far's tenants fail, named; near's all finish.
    let (near_users, far_users) = (tenants_on(&env, "near"), tenants_on(&env, "far"));
    assert_eq!((near_users.len(), far_users.len()), (5, 5));
    let blocker = hold_lock(&far, &format!("pf_user_{}_chat_messages", far_users[0]));
    let child = start_until_it_waits(&env, &far, &["--json", "migrate", "--all", "--jobs", "1"]);
    control("stop");
    let out = child.wait_with_output().expect("migrate ends");
    drop(blocker);
    control("start");
    wait_for_server(&second);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let names = |list: &str| -> Vec<String> {
        let mut names: Vec<String> = report[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["username"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let (migrated, failed) = (names("migrated"), names("failed"));
    assert!(
        failed.contains(&far_users[0]),
        "the tenant cut off mid-migration failed: {report}"
    );
    for f in report["failed"].as_array().unwrap() {
        assert!(
            far_users.iter().any(|u| f["username"] == u.as_str()),
            "only far's tenants fail: {f}"
        );
        assert!(
            f["error"].as_str().unwrap().contains("member far"),
            "the failure names the member: {f}"
        );
    }
    for u in &near_users {
        assert!(migrated.contains(u), "{u} on near finished: {report}");
    }
    assert_eq!(migrated.len() + failed.len(), 10, "{report}");
    // `databases list` answers again; the same command completes the rest.
    let listed = env.run(&["databases", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let again = env.json(&["migrate", "--all"]);
    assert_eq!(
        again["migrated"].as_array().map(Vec::len),
        Some(failed.len()),
        "{again}"
    );
    let versions = pg_rows(
        &mut env.pg(),
        "SELECT DISTINCT schema_version FROM pf_tenants",
    );
    assert_eq!(versions, vec![vec!["4".to_string()]]);
    env.ok(&["verify", "--all"]);

    // A move to a member that is down: nothing is lost, the tenant stays
    // whole on its source, and the same command finishes it once the
    // member is back.
    let tenants = env.json(&["tenants"]);
    let on_near = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["database"] == "near")
        .map(|t| t["username"].as_str().unwrap().to_string())
        .expect("a tenant on near");
    near.client()
        .batch_execute(&format!(
            "INSERT INTO pf_user_{on_near}_experiences (id, title, company, start_date) SELECT 'e' || g, 'job', 'acme', DATE '2020-01-01' FROM generate_series(1, 300) g"
        ))
        .unwrap();
    let before = env.path().join("before.json");
    env.ok(&["fingerprint", &on_near, "--out", before.to_str().unwrap()]);
    // far is full (5 of 5): one of its tenants goes to make room.
    let on_far = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["database"] == "far")
        .map(|t| t["username"].as_str().unwrap().to_string())
        .expect("a tenant on far");
    env.ok(&["deprovision", &on_far, "--yes"]);
    // One place free on each: far comes first by name, but it is down, so
    // a new tenant is placed on near instead.
    let other_near = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["username"].as_str().unwrap().to_string())
        .find(|u| *u != on_near && near_users.contains(u))
        .expect("a second tenant on near");
    env.ok(&["deprovision", &other_near, "--yes"]);
    control("stop");
    env.ok(&["provision", "newcomer"]);
    assert_eq!(env.json(&["where", "newcomer"])["database"], "near");
    env.ok(&["deprovision", "newcomer", "--yes"]);
    let failed = env.run(&["move", &on_near, "--to", "far"]);
    // verify cannot read far's tenants: failed (exit 3), not drift.
    let verified = env.run(&["--json", "verify", "--all"]);
    control("start");
    assert_eq!(verified.status.code(), Some(3), "{}", stderr(&verified));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("JSON");
    assert_eq!(
        report["drifted"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let unread = report["failed"].as_array().expect("failed list");
    assert_eq!(unread.len(), 4, "far's four tenants: {report}");
    assert!(
        unread
            .iter()
            .all(|f| f["error"].as_str().unwrap().contains("far")),
        "{report}"
    );
    wait_for_server(&second);
    assert!(!failed.status.success(), "the move cannot reach far");
    assert!(stderr(&failed).contains("far"), "{}", stderr(&failed));
    assert_eq!(env.json(&["where", &on_near])["database"], "near");
    env.ok(&["fingerprint", "--compare", before.to_str().unwrap()]);
    env.ok(&["move", &on_near, "--to", "far"]);
    assert_eq!(env.json(&["where", &on_near])["database"], "far");
    env.ok(&["fingerprint", "--compare", before.to_str().unwrap()]);

    // The source's server stops in the middle of a move (the move waits to
    // freeze a table locked here): the tenant stays whole on far, and the
    // same command finishes the move once far is back.
    let blocker = hold_lock(&far, &format!("pf_user_{on_near}_experiences"));
    let child = start_until_it_waits(&env, &far, &["move", &on_near, "--to", "near"]);
    control("stop");
    let cut = child.wait_with_output().expect("move ends");
    drop(blocker);
    control("start");
    wait_for_server(&second);
    assert!(!cut.status.success(), "the move lost its source mid-way");
    assert!(stderr(&cut).contains("far"), "{}", stderr(&cut));
    assert!(
        stderr(&cut).contains(&format!("pathfinder-db move {on_near} --cancel")),
        "a move stopped half-way names the ways forward: {}",
        stderr(&cut)
    );
    assert_ne!(env.json(&["where", &on_near])["database"], "near");
    env.ok(&["fingerprint", "--compare", before.to_str().unwrap()]);
    env.ok(&["move", &on_near, "--to", "near"]);
    assert_eq!(env.json(&["where", &on_near])["database"], "near");
    env.ok(&["fingerprint", "--compare", before.to_str().unwrap()]);
}

/// A deployment made before fleets (system version 6, tenants in the
/// registry): `init` brings it to version 7 with every tenant on the catalog,
/// its status kept, and the tenants keep working.
fn upgrade_from_system_v6(env: &Env) {
    use pathfinder_db::config::{Config, Overrides};
    use pathfinder_db::db::Database;
    use pathfinder_db::schema::render::Renderer;
    let config = Config::load(&Overrides {
        database_url: Some(env.url.clone()),
        ..Overrides::default()
    })
    .expect("config");
    let db = Database::open(&config).expect("open");
    let renderer = Renderer::new(db.dialect(), None).expect("renderer");
    {
        let mut session = db.connect().expect("connect");
        let migrations = renderer.system_migrations().expect("system migrations");
        pathfinder_db::migrate::engine::apply(
            session.system(),
            &migrations,
            pathfinder_db::migrate::SYSTEM_HISTORY,
            Some(6),
            false,
            "system schema",
        )
        .expect("system schema at version 6");
        session
            .system()
            .execute(
                "INSERT INTO pf_tenants (username, tenant_key, schema_version, status) VALUES ('old', 'old', 0, 'failed')",
                &[],
            )
            .expect("a registry row of version 6");
    }
    let out = env.ok(&["init"]);
    assert!(out.contains("7"), "{out}");
    let tenants = env.json(&["tenants"]);
    let old = &tenants["tenants"][0];
    assert_eq!(old["username"], "old");
    assert_eq!(old["status"], "failed", "the state is kept: {old}");
    assert_eq!(old["database"], "catalog", "{old}");
    let members = env.json(&["databases", "list"])["databases"].clone();
    assert_eq!(members[0]["name"], "catalog", "{members}");
    // The failed tenant is provisioned again where it is, on the catalog.
    env.ok(&["provision", "old"]);
    env.ok(&["provision", "new"]);
    assert_eq!(env.json(&["where", "new"])["database"], "catalog");
    env.ok(&["verify", "--all"]);
}

#[test]
fn system_version_7_upgrades_a_sqlite_deployment() {
    upgrade_from_system_v6(&Env::sqlite());
}

#[test]
fn system_version_7_upgrades_a_postgres_deployment() {
    let Some(server) = postgres_url() else { return };
    upgrade_from_system_v6(&Env::postgres(&server, "fleetupgrade"));
}

/// A fleet made before placement kept counts (system version 7): `init`
/// counts each member's tenants as the registry holds them (a deprovisioned
/// tenant counts nowhere, one being copied counts on its target too; the
/// catalog's own are not kept), and
/// from then on the registry's trigger keeps the counts through every kind of
/// change, including SQL a DBA runs by hand.
fn upgrade_from_system_v7(env: &Env, urls: [&str; 2]) {
    use pathfinder_db::config::{Config, Overrides};
    use pathfinder_db::db::{Database, Value};
    use pathfinder_db::fleet::members::{kept_counts, tenant_counts};
    use pathfinder_db::schema::render::Renderer;
    let config = Config::load(&Overrides {
        database_url: Some(env.url.clone()),
        ..Overrides::default()
    })
    .expect("config");
    let db = Database::open(&config).expect("open");
    let renderer = Renderer::new(db.dialect(), None).expect("renderer");
    let mut session = db.connect().expect("connect");
    let sys = session.system();
    let migrations = renderer.system_migrations().expect("system migrations");
    pathfinder_db::migrate::engine::apply(
        sys,
        &migrations,
        pathfinder_db::migrate::SYSTEM_HISTORY,
        Some(7),
        false,
        "system schema",
    )
    .expect("system schema at version 7");
    let mut run = |sql: &str, args: &[Value]| {
        sys.execute(sql, args)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    for (name, url) in ["m1", "m2"].iter().zip(urls) {
        run(
            "INSERT INTO pf_databases (name, url, state) VALUES (?, ?, 'open')",
            &[Value::from(*name), Value::from(url)],
        );
    }
    for (user, status, member, claim) in [
        ("a", "active", Some("m1"), None),
        ("b", "deprovisioned", Some("m1"), None),
        ("c", "moving", None, Some("move to m2")),
        ("d", "failed", None, None),
        ("e", "active", Some("m2"), None),
    ] {
        run(
            "INSERT INTO pf_tenants (username, tenant_key, schema_version, status, database_name, claimed_by) VALUES (?, ?, 0, ?, ?, ?)",
            &[
                Value::from(user),
                Value::from(user),
                Value::from(status),
                member.into(),
                claim.into(),
            ],
        );
    }
    drop(session);
    let out = env.ok(&["init"]);
    assert!(out.contains('8'), "{out}");
    let mut session = db.connect().expect("connect");
    let sys = session.system();
    let expect = |pairs: &[(&str, i64)]| -> HashMap<String, i64> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    };
    // The catalog's own tenants are not kept (placement counts them).
    assert_eq!(kept_counts(sys).unwrap(), expect(&[("m1", 1), ("m2", 2)]));
    // Each change as the tool (or a DBA) makes it; after each the kept
    // counts are the registry's.
    for (sql, after) in [
        // The move of c switches to m2, then ends.
        (
            "UPDATE pf_tenants SET database_name = 'm2', claimed_by = 'move from catalog' WHERE username = 'c'",
            [("m1", 1), ("m2", 2)],
        ),
        (
            "UPDATE pf_tenants SET status = 'active', claimed_by = NULL WHERE username = 'c'",
            [("m1", 1), ("m2", 2)],
        ),
        // A migration's claim moves no count.
        (
            "UPDATE pf_tenants SET status = 'migrating', claimed_by = 'run 1' WHERE username = 'e'",
            [("m1", 1), ("m2", 2)],
        ),
        // b is provisioned again, on m2; a is deprovisioned, then forgotten.
        (
            "UPDATE pf_tenants SET status = 'provisioning', database_name = 'm2' WHERE username = 'b'",
            [("m1", 1), ("m2", 3)],
        ),
        (
            "UPDATE pf_tenants SET status = 'deprovisioned' WHERE username = 'a'",
            [("m1", 0), ("m2", 3)],
        ),
        (
            "DELETE FROM pf_tenants WHERE username = 'a'",
            [("m1", 0), ("m2", 3)],
        ),
        // A move of d to m1 that is taken back.
        (
            "UPDATE pf_tenants SET status = 'moving', claimed_by = 'move to m1' WHERE username = 'd'",
            [("m1", 1), ("m2", 3)],
        ),
        (
            "UPDATE pf_tenants SET status = 'failed', claimed_by = NULL WHERE username = 'd'",
            [("m1", 0), ("m2", 3)],
        ),
        (
            "DELETE FROM pf_tenants WHERE username = 'd'",
            [("m1", 0), ("m2", 3)],
        ),
    ] {
        sys.execute(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let kept = kept_counts(sys).unwrap();
        assert_eq!(kept, expect(&after), "after {sql}");
        let mut counted = tenant_counts(sys).unwrap();
        counted.retain(|name, n| *n != 0 && name != "catalog");
        let mut nonzero = kept.clone();
        nonzero.retain(|_, n| *n != 0);
        assert_eq!(nonzero, counted, "after {sql}: the registry's own count");
    }
    // A count edited by hand: doctor says so, `databases recount` mends it.
    sys.execute("UPDATE pf_databases SET tenants = 9 WHERE name = 'm1'", &[])
        .unwrap();
    drop(session);
    let check = env.doctor_check("member counts");
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("m1 (kept 9, registry 0)"),
        "{check}"
    );
    assert_eq!(
        env.json(&["databases", "recount"]),
        serde_json::json!({"changed": [{"name": "m1", "was": 9, "tenants": 0}]})
    );
    env.assert_member_counts_agree();
}

#[test]
fn system_version_8_counts_a_sqlite_fleet() {
    let env = Env::sqlite();
    let (m1, m2) = (env.path().join("m1"), env.path().join("m2"));
    upgrade_from_system_v7(&env, [m1.to_str().unwrap(), m2.to_str().unwrap()]);
}

#[test]
fn system_version_8_counts_a_postgres_fleet() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fleetcounts");
    let url = replace_database(&server, "pf_no_such_member");
    upgrade_from_system_v7(&env, [&url, &url]);
}

/// The retention sweep of a tenant on a PostgreSQL member: rows move into
/// the archive on the member, and the audit row reaches the catalog's log
/// (staged on the member in the batch's transaction, then copied).
#[test]
fn retention_sweeps_tenants_on_a_postgres_member() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fleetret");
    let member = PgDatabase::create(&server, "fleetretm");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "m1", &member.url]);
    env.ok(&["databases", "drain", "catalog"]);
    env.ok(&["provision", "alice", "bob"]);
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    env.ok(&["policies", "apply", "--dir", policies.to_str().unwrap()]);
    let mut m = member.client();
    m.batch_execute(
        "INSERT INTO pf_user_alice_chat_conversations (id, title) VALUES ('c', 'x');
         INSERT INTO pf_user_alice_chat_messages (id, conversation_id, role, content, created_at)
         SELECT 'old' || g, 'c', 'user', 'a year ago', now() - interval '400 days' FROM generate_series(1, 1200) g;
         INSERT INTO pf_user_alice_chat_messages (id, conversation_id, role, content, created_at)
         VALUES ('new', 'c', 'user', 'today', now());",
    )
    .unwrap();
    env.ok(&["retention", "run", "--all", "--batch-size", "500"]);
    let count = |sql: &str, client: &mut postgres::Client| pg_rows(client, sql)[0][0].clone();
    assert_eq!(
        count("SELECT count(*) FROM pf_user_alice_chat_messages", &mut m),
        "1"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM pf_user_alice_chat_messages_archive",
            &mut m
        ),
        "1200"
    );
    assert_eq!(count("SELECT count(*) FROM pf_audit_stage", &mut m), "0");
    let logged = pg_rows(
        &mut env.pg(),
        "SELECT count(*) FROM pf_audit_log WHERE action = 'retention.sweep' AND entity_id = 'pf_user_alice_chat_messages'",
    );
    assert_ne!(logged[0][0], "0", "the sweep is in the catalog's audit log");

    // A batch's audit row a killed sweep left staged on the member (as the
    // sweep stages it) reaches the catalog's log on the next sweep, though
    // nothing is due; and one left before a move goes with the move.
    let stage = |id: &str, m: &mut postgres::Client| {
        let row = serde_json::json!({
            "user_id": null, "action": "retention.sweep", "entity_type": "table",
            "entity_id": "pf_user_alice_chat_messages", "command": "retention",
            "execution_time_ms": 3, "error": null,
            "details": "{\"archived\":20,\"deleted\":20}",
        });
        m.execute(
            "INSERT INTO pf_audit_stage (id, row_json) VALUES ($1, $2)",
            &[&id, &row.to_string()],
        )
        .unwrap();
    };
    let in_log = |id: &str| {
        pg_rows(
            &mut env.pg(),
            &format!("SELECT count(*) FROM pf_audit_log WHERE id = '{id}'"),
        )[0][0]
            .clone()
    };
    let left = "00000000-0000-4000-8000-00000000000a";
    stage(left, &mut m);
    env.ok(&["retention", "run", "--all"]);
    assert_eq!(
        in_log(left),
        "1",
        "a staged row is delivered by the next sweep"
    );
    assert_eq!(count("SELECT count(*) FROM pf_audit_stage", &mut m), "0");
    let before_move = "00000000-0000-4000-8000-00000000000b";
    stage(before_move, &mut m);
    let other = PgDatabase::create(&server, "fleetretm2");
    env.ok(&["databases", "add", "m2", &other.url]);
    env.ok(&["move", "alice", "--to", "m2"]);
    assert_eq!(
        in_log(before_move),
        "1",
        "a move delivers the source's staged row"
    );
    assert_eq!(count("SELECT count(*) FROM pf_audit_stage", &mut m), "0");
}

/// `rebalance` evens out members by fill, smallest tenants first, and
/// empties a drained member so that it can be removed; every row stays.
fn rebalance_evens_out_and_empties_a_drained_member(env: &Env, member_urls: [String; 2]) {
    env.ok(&["init"]);
    env.ok(&["databases", "add", "a", &member_urls[0], "--capacity", "10"]);
    env.ok(&["databases", "add", "b", &member_urls[1], "--capacity", "10"]);
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (1..=6).map(|n| format!("r{n}")).collect();
    let mut args = vec!["--database", "a", "provision"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);
    let before = env.path().join("before.json");
    env.ok(&["fingerprint", "--all", "--out", before.to_str().unwrap()]);

    let plan = env.json(&["rebalance", "--dry-run"]);
    assert_eq!(plan["moves"].as_array().map(Vec::len), Some(3), "{plan}");
    assert_eq!(counts_by_member(env)["a"], 6, "a dry run moves nothing");
    let bounded = env.run(&["rebalance", "--max-moves", "1"]);
    assert_eq!(bounded.status.code(), Some(3), "{}", stderr(&bounded));
    let done = env.json(&["rebalance"]);
    assert_eq!(done["balanced"], true, "{done}");
    let counts = counts_by_member(env);
    assert_eq!((counts["a"], counts["b"]), (3, 3), "{counts:?}");

    env.ok(&["databases", "drain", "a"]);
    let emptied = env.json(&["rebalance"]);
    assert_eq!(
        emptied["moves"].as_array().map(Vec::len),
        Some(3),
        "{emptied}"
    );
    let counts = counts_by_member(env);
    assert_eq!((counts["a"], counts["b"]), (0, 6), "{counts:?}");
    env.ok(&["databases", "remove", "a"]);
    env.ok(&["fingerprint", "--compare", before.to_str().unwrap()]);
    if env.is_sqlite() {
        // Moved files are as private as provisioned ones.
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(&member_urls[1]).unwrap().flatten() {
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is mode {mode:o}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn rebalance_on_sqlite_member_folders() {
    let env = Env::sqlite();
    let folders = [
        env.path().join("a").display().to_string(),
        env.path().join("b").display().to_string(),
    ];
    rebalance_evens_out_and_empties_a_drained_member(&env, folders);
}

#[test]
fn rebalance_on_postgres_members() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "fleetreb");
    let a = PgDatabase::create(&server, "fleetreba");
    let b = PgDatabase::create(&server, "fleetrebb");
    rebalance_evens_out_and_empties_a_drained_member(&env, [a.url.clone(), b.url.clone()]);
}

/// `--jobs` is per member: with one session per member, a member whose
/// tenant is held up (its DDL waits for a lock) does not hold up another
/// member's tenants, which all finish meanwhile.
#[test]
fn jobs_are_per_member_so_a_slow_member_holds_up_no_other() {
    let Some(server) = postgres_url() else { return };
    let env = Env::postgres(&server, "perjobs");
    let slow = PgDatabase::create(&server, "perjobslow");
    let quick = PgDatabase::create(&server, "perjobquick");
    env.ok(&["init"]);
    env.ok(&["databases", "add", "slow", &slow.url, "--capacity", "6"]);
    env.ok(&["databases", "add", "quick", &quick.url, "--capacity", "6"]);
    env.ok(&["databases", "drain", "catalog"]);
    let users: Vec<String> = (0..12).map(|n| format!("j{n:02}")).collect();
    let mut args = vec!["provision", "--to", "3"];
    args.extend(users.iter().map(String::as_str));
    env.ok(&args);
    let (slow_users, quick_users) = (tenants_on(&env, "slow"), tenants_on(&env, "quick"));
    assert_eq!((slow_users.len(), quick_users.len()), (6, 6));
    let mut blocker = hold_lock(&slow, &format!("pf_user_{}_chat_messages", slow_users[0]));
    let child = start_until_it_waits(&env, &slow, &["--json", "migrate", "--all", "--jobs", "1"]);
    let mut catalog = env.pg();
    let names = quick_users
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let quick_done = (0..300).any(|_| {
        let left = pg_rows(
            &mut catalog,
            &format!(
                "SELECT COUNT(*) FROM pf_tenants WHERE username IN ({names}) AND schema_version = 3"
            ),
        );
        if left[0][0] == "0" {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    let slow_waiting = pg_rows(
        &mut slow.client(),
        "SELECT COUNT(*) FROM pg_locks WHERE NOT granted",
    );
    blocker.batch_execute("ROLLBACK").unwrap();
    let out = child.wait_with_output().expect("migrate ends");
    assert!(
        quick_done,
        "quick's tenants finished while slow's first one waited"
    );
    assert_ne!(slow_waiting[0][0], "0", "slow's tenant was still waiting");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["migrated"].as_array().map(Vec::len), Some(12));
}
