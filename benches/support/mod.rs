//! What the benchmark programs share: scratch databases on a PostgreSQL server
//! and running the release binary. Included with `#[path = "support/mod.rs"] mod support;`
//! (a folder without main.rs is no bench target of its own).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postgres::{Client, NoTls};

pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The option every benchmark takes: the PostgreSQL server its scratch
/// databases are made on (`--server-url`, also spelled `--database-url`).
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// PostgreSQL server for the scratch databases (its user may create databases)
    #[arg(
        long = "server-url",
        visible_alias = "database-url",
        value_name = "URL",
        env = "PATHFINDER_BENCH_POSTGRES_URL",
        default_value = DEFAULT_SERVER_URL
    )]
    pub url: String,
}

/// A whole number of at least 1 (tenants, jobs, rounds, a batch size).
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// Parses a benchmark's options (clap exits with its usage on an error or
/// `--help`); `cargo bench` adds `--bench` to the arguments of a benchmark
/// without a harness, which is dropped first.
pub fn options<T: clap::Parser>() -> T {
    T::parse_from(std::env::args().filter(|a| a != "--bench"))
}

/// The release binary, built first so that the measure is of the current code.
/// Benchmarks are built by `cargo bench` in the release profile, next to it.
pub fn release_binary() -> anyhow::Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_pathfinder-db"));
    if !bin.exists() {
        bail!("{} is missing: run `cargo build --release`", bin.display());
    }
    Ok(bin)
}

/// The scratch databases a run created; dropped when it goes out of scope, so
/// they also go away when a step fails (not on Ctrl-C or kill: then drop the
/// `<prefix>_*` databases by hand).
pub struct Scratch {
    admin: Client,
    server_url: String,
    pub prefix: String,
    created: Vec<String>,
}

impl Scratch {
    /// `bench` names the benchmark: databases are `bench_<bench>_<pid>_<suffix>`.
    pub fn new(server_url: &str, bench: &str) -> anyhow::Result<Scratch> {
        let admin = Client::connect(server_url, NoTls)
            .with_context(|| format!("connecting to {server_url}"))?;
        Ok(Scratch {
            admin,
            server_url: server_url.to_string(),
            prefix: format!("bench_{bench}_{}", std::process::id()),
            created: Vec::new(),
        })
    }

    /// The URL of database `name` on the same server.
    pub fn url(&self, name: &str) -> String {
        let mut url = url::Url::parse(&self.server_url).expect("checked by connect");
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// Creates `<prefix>_<suffix>`, empty or as a copy of `template`; returns its name.
    pub fn create(&mut self, suffix: &str, template: Option<&str>) -> anyhow::Result<String> {
        let name = format!("{}_{suffix}", self.prefix);
        let sql = match template {
            // FILE_COPY copies the files after a checkpoint instead of writing the
            // whole template to the WAL (PostgreSQL 15's default, WAL_LOG), which
            // is much slower for a database with tens of thousands of relations.
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t} STRATEGY = FILE_COPY"),
            None => format!("CREATE DATABASE {name}"),
        };
        // A backend of a pathfinder-db process that just exited may still be
        // attached to the template for a moment: retry a few times.
        let mut attempt = 0;
        loop {
            match self.admin.batch_execute(&sql) {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.to_string().contains("being accessed") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e).with_context(|| sql.clone()),
            }
        }
        self.created.push(name.clone());
        Ok(name)
    }

    pub fn drop_database(&mut self, name: &str) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        self.created.retain(|n| n != name);
        Ok(())
    }

    /// Flushes dirty buffers so a timed step does not pay for an earlier one's
    /// writes (needs superuser or pg_checkpoint; skipped otherwise), and lets the
    /// disk settle.
    pub fn checkpoint(&mut self) {
        let _ = self.admin.batch_execute("CHECKPOINT");
        std::thread::sleep(Duration::from_millis(500));
    }

    /// The server's version, for the report.
    pub fn server_version(&mut self) -> String {
        self.admin
            .query_one("SHOW server_version", &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.created) {
            match self
                .admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            {
                Ok(()) => eprintln!("dropped {name}"),
                Err(e) => eprintln!("could not drop {name}: {e}"),
            }
        }
    }
}

/// What one run of the binary did.
pub struct Run {
    pub elapsed: Duration,
    pub stdout: String,
    /// None when it was stopped at the time limit.
    pub code: Option<i32>,
}

/// Runs `pathfinder-db --database-url <url> <args>` in `dir`, stopping it after
/// `limit`; a non-zero exit is an error unless `allowed` lists it.
pub fn pathfinder(
    bin: &Path,
    dir: &Path,
    url: &str,
    args: &[&str],
    limit: Duration,
    allowed: &[i32],
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let out_path = dir.join(format!("stdout_{}", std::process::id()));
    let err_path = dir.join(format!("stderr_{}", std::process::id()));
    let mut child = Command::new(bin)
        .current_dir(dir)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let code = status.and_then(|s| s.code());
    if let Some(code) = code
        && code != 0
        && !allowed.contains(&code)
    {
        bail!(
            "pathfinder-db {} failed (exit {code}): {}",
            args.join(" "),
            stderr.trim()
        );
    }
    Ok(Run {
        elapsed,
        stdout,
        code: status.map(|s| s.code().unwrap_or(-1)),
    })
}

/// Runs `pathfinder-db --database-url <url> <args>`, failing on a non-zero
/// exit; returns the wall time and stdout.
pub fn pathfinder_timed(
    bin: &Path,
    url: &str,
    args: &[&str],
) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "pathfinder-db {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((elapsed, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs the prepared scripts, one long-lived `psql` per script, all at once;
/// returns the wall time until the last one finished.
pub fn psql_parallel(url: &str, scripts: &[PathBuf]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let children = scripts
        .iter()
        .map(|script| {
            Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"])
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("running psql (is it on PATH?)")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            bail!("psql failed ({status})");
        }
    }
    Ok(started.elapsed())
}

/// Runs `bench` with the release binary and a scratch folder `<tmp>/bench_<name>_<pid>`,
/// removed afterwards (also when the benchmark failed).
pub fn with_work_dir(
    name: &str,
    bench: impl FnOnce(&Path, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let bin = release_binary()?;
    let work = std::env::temp_dir().join(format!("bench_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&bin, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}
