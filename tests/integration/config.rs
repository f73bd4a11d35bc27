//! Configuration precedence through the binary: file < environment < flags.

use crate::common::{self, AssertExt};

use common::pathfinder;

#[test]
fn flags_beat_environment_beat_file() {
    let dir = common::tempdir();
    let d = dir.path();
    std::fs::write(
        d.join("pathfinder-db.toml"),
        "database_url = \"sqlite://from_file.db\"\njobs = 2\n",
    )
    .unwrap();

    pathfinder(d).args(["init"]).assert().success();
    assert!(d.join("from_file.db").exists(), "the file's URL is used");

    pathfinder(d)
        .env("PATHFINDER_DATABASE_URL", "sqlite://from_env.db")
        .args(["init"])
        .assert()
        .success();
    assert!(
        d.join("from_env.db").exists(),
        "the environment beats the file"
    );

    pathfinder(d)
        .env("PATHFINDER_DATABASE_URL", "sqlite://from_env.db")
        .args(["--database-url", "sqlite://from_flag.db", "init"])
        .assert()
        .success();
    assert!(
        d.join("from_flag.db").exists(),
        "the flag beats the environment"
    );

    // Empty variables (common in cron environments) count as unset.
    pathfinder(d)
        .env("PATHFINDER_DATABASE_URL", "")
        .env("PATHFINDER_CONFIG", "")
        .args(["tenants"])
        .assert()
        .success();
}

/// Relative paths in a configuration file named by PATHFINDER_CONFIG (as
/// cron gives it) are the file's, whatever folder the command starts in.
#[test]
fn a_config_files_relative_paths_are_its_own() {
    let dir = common::tempdir();
    let d = dir.path();
    let etc = d.join("etc");
    std::fs::create_dir_all(etc.join("policies")).unwrap();
    std::fs::write(
        etc.join("pathfinder-db.toml"),
        "database_url = \"sqlite://data/pathfinder.db\"\npolicies_dir = \"policies\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(etc.join("data")).unwrap();
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    pathfinder(&home)
        .env("PATHFINDER_CONFIG", etc.join("pathfinder-db.toml"))
        .args(["provision", "alice"])
        .assert()
        .success();
    assert!(etc.join("data/pathfinder.db").exists());
    assert!(!home.join("data").exists());
    // The policies folder is the file's too: an empty one is read (none in force).
    let out = pathfinder(&home)
        .env("PATHFINDER_CONFIG", etc.join("pathfinder-db.toml"))
        .args(["policies", "apply", "--dry-run"])
        .assert()
        .success();
    let said = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(!said.contains("home"), "{said}");
}

#[test]
fn explicit_config_file_must_exist_and_be_valid() {
    let dir = common::tempdir();
    let d = dir.path();
    let out = pathfinder(d)
        .args(["--config", "missing.toml", "tenants"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("missing.toml"), "{err}");

    std::fs::write(d.join("bad.toml"), "databse_url = \"x\"\n").unwrap();
    let out = pathfinder(d)
        .args(["--config", "bad.toml", "tenants"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("databse_url"), "unknown keys are named: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let out = pathfinder(d)
        .args(["--database-url", "mysql://x", "tenants"])
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("no known scheme"));
}

#[test]
fn the_example_configuration_is_valid() {
    let dir = common::tempdir();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pathfinder-db.toml");
    std::fs::copy(&example, dir.path().join("pathfinder-db.toml")).unwrap();
    pathfinder(dir.path()).args(["init"]).assert().success();
    assert!(dir.path().join("pathfinder.db").exists());
}

/// PostgreSQL connections read libpq's password file (`PGPASSFILE`), and
/// ignore one that others may read, saying so once. (The test server trusts
/// every connection, so what shows is that the file is consulted, not the
/// password itself; the matching is unit-tested in `db::pgpass`.)
#[test]
fn postgres_password_file_is_read_and_a_readable_one_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = common::Env::postgres(&server, "pgpass");
    let member = common::PgDatabase::create(&server, "pgpassm");
    env.ok(&["init"]);
    let file = env.path().join("pgpass");
    std::fs::write(&file, "*:*:*:*:not-needed-here\n").unwrap();
    let run = |mode: u32, args: &[&str]| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = env
            .std_cmd()
            .env("PGPASSFILE", &file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = run(0o644, &["status"]);
    assert_eq!(
        warned
            .matches("is readable by group or others and is ignored")
            .count(),
        1,
        "said once: {warned}"
    );
    assert!(!warned.contains("not-needed-here"), "{warned}");
    let quiet = run(0o600, &["status"]);
    assert!(!quiet.contains("password file"), "{quiet}");
    // Once per run, however many connections (the catalog's, a member's).
    let warned = run(0o640, &["databases", "add", "pgpassm", &member.url]);
    assert_eq!(warned.matches("password file").count(), 1, "{warned}");
}

/// A member's password from the file its configuration entry names
/// (`[members.NAME] password_file`): read only when the file is the owner's
/// alone, never shown, and an entry for a name that is not a member name is
/// refused when the configuration is read.
#[test]
fn member_password_file_from_the_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = common::Env::postgres(&server, "pwfile");
    let member = common::PgDatabase::create(&server, "pwfilem");
    env.ok(&["init"]);
    let secret = env.path().join("pwm.password");
    std::fs::write(&secret, "s3cret-not-shown\n").unwrap();
    let config = env.path().join("pathfinder-db.toml");
    assert!(
        !config.exists(),
        "the test writes the only configuration file"
    );
    std::fs::write(
        &config,
        format!(
            "[members.pwm]\npassword_file = {:?}\n",
            secret.to_str().unwrap()
        ),
    )
    .unwrap();
    let add = ["databases", "add", "pwm", member.url.as_str()];
    let mode = |m: u32| std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(m));
    mode(0o644).unwrap();
    let out = env.run(&add);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("member pwm: password file")
            && stderr.contains("accessible to group or others"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Owner-only: read (the server here trusts local connections, so the
    // password is sent and not needed), and the member is added.
    mode(0o600).unwrap();
    env.ok(&add);
    assert_eq!(
        env.json(&["databases", "list"])["databases"][1]["reachable"],
        true
    );
    // An empty file is named as such.
    std::fs::write(&secret, "\n").unwrap();
    let out = env.run(&["databases", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        format!("{stdout}{stderr}").contains("is empty: put the password on its first line"),
        "{stdout}{stderr}"
    );
    // An entry whose name is no member name.
    std::fs::write(&config, "[members.\"Pg-2\"]\npassword_file = \"x\"\n").unwrap();
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("[members.\"Pg-2\"]"), "{stderr}");
}
