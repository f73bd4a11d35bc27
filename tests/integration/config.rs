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
