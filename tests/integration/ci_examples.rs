//! The CI examples (`examples/ci/`): `migrate.sh check` and `migrate.sh deploy` run as a
//! pipeline runs them, with the built binary on PATH and the secrets in the environment, on
//! SQLite always and on the real PostgreSQL when PATHFINDER_TEST_POSTGRES_URL is set; the
//! two YAML files must call exactly those steps. Also `tenants --pending`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Env;
use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::{Renderer, Scope};
use serde_json::Value as Json;

/// The script, relative to the repository (as the YAML files call it).
const SCRIPT: &str = "examples/ci/migrate.sh";
/// The script's modes, every one of which the tests run and the YAML files call.
const MODES: [&str; 2] = ["check", "deploy"];
const YAML_FILES: [&str; 2] = [
    "examples/ci/github-actions.yml",
    "examples/ci/gitlab-ci.yml",
];
/// The report folder the tests (and the YAML files) give the script.
const REPORT_DIR: &str = "pathfinder-reports";
/// A master key (base64 of 32 bytes) in the job's environment, as a CI secret would be.
const MASTER_KEY: &str = "Y2lfZXhhbXBsZXNfdGVzdF9tYXN0ZXJfa2V5XzAwMDE=";
/// The password put into a PostgreSQL URL that has none (trust auth ignores it).
const DB_PASSWORD: &str = "ci-secret-pw-5e9f";

fn latest() -> i64 {
    Renderer::new(Dialect::Sqlite, None)
        .expect("templates load")
        .latest_version(Scope::Tenant) as i64
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `scheme://user@host/...` with `password` added to the userinfo; None when the URL has
/// no user or already has a password (the test then cannot name a secret of its own).
fn with_password(url: &str, password: &str) -> Option<String> {
    let start = url.find("://")? + 3;
    let at = start + url[start..].find('@')?;
    if url[start..at].contains(':') || url[start..at].contains('/') {
        return None;
    }
    Some(format!("{}:{password}{}", &url[..at], &url[at..]))
}

/// A CI job's environment: the database URL and master key as secrets, the report folder
/// and canary size, and the built binary first on PATH.
struct Pipeline<'a> {
    env: &'a Env,
    url: String,
    secrets: Vec<String>,
}

impl<'a> Pipeline<'a> {
    fn new(env: &'a Env) -> Self {
        let mut secrets = vec![MASTER_KEY.to_string()];
        let url = match with_password(&env.url, DB_PASSWORD) {
            Some(url) if !env.is_sqlite() => {
                secrets.push(DB_PASSWORD.to_string());
                url
            }
            _ => env.url.clone(),
        };
        Pipeline { env, url, secrets }
    }

    fn reports(&self) -> PathBuf {
        self.env.path().join(REPORT_DIR)
    }

    /// `bash examples/ci/migrate.sh MODE` in the job's environment; asserts that no
    /// secret appears in its output or reports.
    fn run(&self, mode: &str) -> Output {
        let out = script(self.env.path(), &[mode])
            .env("PATHFINDER_DATABASE_URL", &self.url)
            .env("PATHFINDER_MASTER_KEY", MASTER_KEY)
            .env("PATHFINDER_CI_REPORT_DIR", REPORT_DIR)
            .env("PATHFINDER_CI_CANARY", "2")
            .output()
            .expect("run migrate.sh");
        self.assert_no_secret(&out);
        out
    }

    fn assert_no_secret(&self, out: &Output) {
        let mut texts = vec![
            ("stdout".to_string(), text(&out.stdout)),
            ("stderr".to_string(), text(&out.stderr)),
        ];
        if let Ok(dir) = std::fs::read_dir(self.reports()) {
            for file in dir {
                let path = file.expect("report entry").path();
                let body = std::fs::read_to_string(&path).expect("read report");
                texts.push((path.display().to_string(), body));
            }
        }
        for (what, body) in &texts {
            for secret in &self.secrets {
                assert!(
                    !body.contains(secret.as_str()),
                    "a secret in {what}: {body}"
                );
            }
        }
    }

    fn has_report(&self, name: &str) -> bool {
        self.reports().join(format!("{name}.json")).exists()
    }

    fn report(&self, name: &str) -> Json {
        let path = self.reports().join(format!("{name}.json"));
        let body = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("report {}: {e}", path.display()));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}: {body}", path.display()))
    }
}

/// `bash <repo>/examples/ci/migrate.sh ARGS` in `dir`, with the built binary first on PATH
/// and no PATHFINDER_* variable inherited.
fn script(dir: &Path, args: &[&str]) -> std::process::Command {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pathfinder-db"))
        .parent()
        .expect("binary folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo().join(SCRIPT)).args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("PATHFINDER_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PATH", path);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn usernames(list: &Json) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| t["username"].as_str().expect("username").to_string())
        .collect()
}

/// Provisions each user at version 1, one command each, so that `--order oldest` takes
/// them in the order given (ties in `created_at` go by username, which agrees).
fn provision_v1(env: &Env, users: &[&str]) {
    for user in users {
        env.ok(&["provision", "--to", "1", user]);
    }
}

/// The happy path: PR check, then deploy (canary, then the rest), with `tenants --pending`
/// listing the tenants behind before and none after.
fn check_then_deploy(env: &Env) {
    provision_v1(env, &["ann", "bea", "cid", "dan"]);

    let pending = env.json(&["tenants", "--pending"]);
    assert_eq!(pending["target"].as_i64(), Some(latest()), "{pending}");
    assert_eq!(usernames(&pending["tenants"]), ["ann", "bea", "cid", "dan"]);
    // The same objects as `tenants --json`.
    let all = env.json(&["tenants"]);
    assert_eq!(pending["tenants"], all["tenants"]);
    let table = env.ok(&["tenants", "--pending"]);
    assert!(
        table.contains(&format!(
            "4 tenant(s) pending migration to version {}",
            latest()
        )),
        "{table}"
    );
    assert!(
        table.contains("USERNAME") && table.contains("dan"),
        "{table}"
    );

    let ci = Pipeline::new(env);
    let out = ci.run("check");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("migrate.sh check: done"));
    let dry = ci.report("migrate-dry-run");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(usernames(&dry["tenants"]), ["ann", "bea", "cid", "dan"]);
    assert_eq!(dry["tenants"][0]["from_version"], 1);
    let verify = ci.report("verify");
    assert_eq!(verify["verified"], 4, "{verify}");
    assert_eq!(verify["drifted"], serde_json::json!([]));
    // The check changed nothing.
    assert_eq!(
        env.json(&["tenants", "--pending"])["tenants"],
        all["tenants"]
    );

    let out = ci.run("deploy");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("migrate.sh deploy: done"));
    assert_eq!(
        usernames(&ci.report("pending")["tenants"]),
        ["ann", "bea", "cid", "dan"]
    );
    let canary = ci.report("migrate-canary");
    assert_eq!(usernames(&canary["migrated"]), ["ann", "bea"], "{canary}");
    assert_eq!(canary["failed"], serde_json::json!([]));
    let rest = ci.report("migrate-all");
    assert_eq!(usernames(&rest["migrated"]), ["cid", "dan"], "{rest}");
    assert_eq!(rest["target"].as_i64(), Some(latest()));

    let pending = env.json(&["tenants", "--pending"]);
    assert_eq!(pending["tenants"], serde_json::json!([]), "{pending}");
    assert_eq!(
        env.ok(&["tenants", "--pending"]).trim(),
        format!("no tenant pending: every tenant is at version {}", latest())
    );
}

/// A tenant whose tables were changed by hand: the check fails on verify (exit 1, the
/// drift in the report); the deploy fails in the canary (exit 3) and leaves the rest alone.
fn failing_tenant(env: &Env) {
    provision_v1(env, &["eve", "fay", "gus"]);
    env.tenant_exec("eve", "DROP TABLE pf_user_eve_chat_messages");
    let ci = Pipeline::new(env);

    let out = ci.run("check");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("FAILED: verify (exit 1): the report lists what failed"),
        "{err}"
    );
    assert!(
        err.contains("migrate.sh check: failed with exit code 1"),
        "{err}"
    );
    assert_eq!(usernames(&ci.report("verify")["drifted"]), ["eve"]);
    assert!(ci.has_report("migrate-dry-run"));

    // A report an earlier run left behind must not pass for this run's.
    std::fs::write(ci.reports().join("migrate-all.json"), "{}").expect("stale report");
    let out = ci.run("deploy");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("FAILED: migrate-canary (exit 3): some tenants failed"),
        "{err}"
    );
    assert!(
        err.contains("the canary slice failed: the other tenants were not migrated"),
        "{err}"
    );
    assert!(
        err.contains("migrate.sh deploy: failed with exit code 3"),
        "{err}"
    );
    let canary = ci.report("migrate-canary");
    assert_eq!(usernames(&canary["failed"]), ["eve"], "{canary}");
    assert_eq!(usernames(&canary["migrated"]), ["fay"], "{canary}");
    assert!(
        !ci.has_report("migrate-all"),
        "the rest ran after a failed canary"
    );

    // gus was not touched; eve is failed; both are still pending.
    let pending = env.json(&["tenants", "--pending"]);
    assert_eq!(usernames(&pending["tenants"]), ["eve", "gus"], "{pending}");
    assert_eq!(pending["tenants"][0]["status"], "failed");
    assert_eq!(pending["tenants"][1]["schema_version"], 1);
}

#[test]
fn sqlite_ci_check_then_deploy() {
    check_then_deploy(&Env::sqlite());
}

#[test]
fn postgres_ci_check_then_deploy() {
    if let Some(server) = common::postgres_url() {
        check_then_deploy(&Env::postgres(&server, "ci_ok"));
    }
}

#[test]
fn sqlite_ci_failing_tenant_fails_the_job() {
    failing_tenant(&Env::sqlite());
}

#[test]
fn postgres_ci_failing_tenant_fails_the_job() {
    if let Some(server) = common::postgres_url() {
        failing_tenant(&Env::postgres(&server, "ci_fail"));
    }
}

/// `--pending` lists live tenants only: it does not combine with `--all`.
#[test]
fn tenants_pending_refuses_all() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let out = env.run(&["tenants", "--pending", "--all"]);
    assert_eq!(out.status.code(), Some(2));
}

/// An unreachable database: exit 1 with the tool's message, no report, and the password
/// in the URL never printed.
#[test]
fn ci_unreachable_database_is_exit_1_without_the_password() {
    let dir = common::tempdir();
    let out = script(dir.path(), &["check"])
        .env(
            "PATHFINDER_DATABASE_URL",
            format!("postgres://ci:{DB_PASSWORD}@127.0.0.1:1/nodb"),
        )
        .env("PATHFINDER_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("run migrate.sh");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stderr.contains("FAILED: migrate-dry-run (exit 1): an error"),
        "{stderr}"
    );
    for secret in [DB_PASSWORD, MASTER_KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
    // The failed step's report is the error document, without the secrets.
    let report = std::fs::read_to_string(dir.path().join(REPORT_DIR).join("migrate-dry-run.json"))
        .expect("the failed step's report");
    let doc: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    assert_eq!(doc["exit_code"], 1, "{doc}");
    assert!(doc["error"].is_string(), "{doc}");
    for secret in [DB_PASSWORD, MASTER_KEY] {
        assert!(!report.contains(secret), "{report}");
    }
}

/// What the script checks before it runs anything: exit 2 with a message that says what to do.
#[test]
fn ci_script_refuses_a_bad_setup() {
    let dir = common::tempdir();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("run migrate.sh");
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = run(&mut script(dir.path(), &["check"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("PATHFINDER_DATABASE_URL is not set"), "{err}");

    let (code, err) = run(&mut script(dir.path(), &["ship"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("usage: migrate.sh check|deploy"), "{err}");

    let url = common::sqlite_url(dir.path());
    let (code, err) = run(script(dir.path(), &["deploy"])
        .env("PATHFINDER_DATABASE_URL", &url)
        .env("PATHFINDER_CI_CANARY", "ten"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("PATHFINDER_CI_CANARY must be a whole number"),
        "{err}"
    );

    let (code, err) = run(script(dir.path(), &["check"])
        .env("PATHFINDER_DATABASE_URL", &url)
        .env("PATH", "/usr/bin:/bin"));
    assert_eq!(code, Some(2));
    assert!(err.contains("pathfinder-db is not on PATH"), "{err}");
    assert!(!dir.path().join("pathfinder.db").exists());
}

/// Lines that are not comments (`#` first).
fn code_lines(file: &str) -> Vec<String> {
    std::fs::read_to_string(repo().join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Both YAML files run the script in exactly the modes the tests above run, with the same
/// report folder (published as the artifact), and nothing prints the environment.
#[test]
fn ci_yaml_files_call_exactly_the_tested_steps() {
    let script_lines = code_lines(SCRIPT);
    assert!(script_lines.iter().any(|l| l == "set -euo pipefail"));
    for file in YAML_FILES {
        let lines = code_lines(file);
        let mut modes: Vec<String> = lines
            .iter()
            .filter(|l| l.contains("migrate.sh"))
            .map(|l| {
                let call = l.trim_start_matches("- ").trim_start_matches("run: ");
                call.strip_prefix(&format!("{SCRIPT} "))
                    .unwrap_or_else(|| panic!("{file}: not a plain call of {SCRIPT}: {l}"))
                    .to_string()
            })
            .collect();
        modes.sort();
        assert_eq!(modes, MODES, "{file}");
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("PATHFINDER_CI_REPORT_DIR: {REPORT_DIR}")),
            "{file}: the report folder"
        );
        assert!(
            lines.iter().any(|l| l.contains("PATHFINDER_CI_CANARY: ")),
            "{file}: the canary size"
        );
        let artifact = format!("{REPORT_DIR}/");
        assert!(
            lines.iter().any(|l| l.ends_with(&artifact)),
            "{file}: the reports as an artifact"
        );
    }
    let github = code_lines(YAML_FILES[0]);
    assert!(
        github
            .iter()
            .any(|l| l == "PATHFINDER_DATABASE_URL: ${{ secrets.PATHFINDER_DATABASE_URL }}")
    );
    for file in [SCRIPT, YAML_FILES[0], YAML_FILES[1]] {
        for line in code_lines(file) {
            for leak in [
                "set -x",
                "xtrace",
                "printenv",
                "env |",
                "$PATHFINDER_DATABASE_URL",
            ] {
                assert!(!line.contains(leak), "{file}: {line}");
            }
        }
    }
}
