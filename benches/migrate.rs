//! Benchmark of `pathfinder-db migrate --all` on PostgreSQL (run by hand, not a test).
//!
//! ```sh
//! cargo bench --bench migrate -- [--tenants N] [--jobs 1,2,4] [--server-url URL]
//! ```
//!
//! Defaults: 10,000 tenants, job counts 1, 2 and 4, server
//! `postgres://postgres@127.0.0.1:5432/postgres` (or `PATHFINDER_BENCH_POSTGRES_URL`).
//! The user must be allowed to create databases. See benches/MIGRATE.md.
//!
//! What it does:
//! 1. runs the release binary `cargo bench` built with it,
//!    creates a scratch database and provisions N tenants at version 1 into it;
//! 2. for each job count J clones that database twice (`CREATE DATABASE ... TEMPLATE`;
//!    the last round uses the original instead of a second clone), times
//!    `pathfinder-db migrate --all --to 2 --jobs J` on clone A and the floor on clone B:
//!    the same V2 statements fed to J long-lived `psql` sessions, one transaction
//!    per tenant;
//! 3. times a no-op `migrate --all` over the migrated tenants three times;
//! 4. drops every scratch database (also when a step fails).

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::{Scratch, pathfinder_timed as pathfinder, psql_parallel};

use anyhow::{Context as _, bail};
use postgres::{Client, NoTls};

/// Options after `cargo bench --bench migrate --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench migrate --",
    about = "migrate --all against the same DDL through psql"
)]
struct Options {
    /// Tenants to migrate
    #[arg(long, default_value_t = 10_000, value_parser = support::positive)]
    tenants: usize,
    /// Job counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2,4", value_parser = support::positive)]
    jobs: Vec<usize>,
    #[command(flatten)]
    server: support::Server,
}

/// One integer from a query on database `url` (for the sanity checks).
fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let mut client = Client::connect(url, NoTls)?;
    Ok(client.query_one(sql, &[])?.get(0))
}

/// Every tenant's V2 statements, from `migrate --all --dry-run --json`.
fn v2_statements(bin: &Path, url: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let (_, out) = pathfinder(
        bin,
        url,
        &["migrate", "--all", "--to", "2", "--dry-run", "--json"],
    )?;
    let json: serde_json::Value = serde_json::from_str(&out).context("dry-run JSON")?;
    let tenants = json["tenants"]
        .as_array()
        .context("no tenants in dry run")?;
    Ok(tenants
        .iter()
        .map(|t| {
            t["migrations"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| m["statements"].as_array().into_iter().flatten())
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .collect())
}

/// Writes `jobs` psql scripts, tenants dealt round-robin, each tenant one
/// transaction: `BEGIN; <its statements>; COMMIT;`.
fn write_floor_scripts(
    dir: &Path,
    tenants: &[Vec<String>],
    jobs: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut scripts = vec![String::new(); jobs];
    for (i, statements) in tenants.iter().enumerate() {
        let script = &mut scripts[i % jobs];
        script.push_str("BEGIN;\n");
        for s in statements {
            writeln!(script, "{s};")?;
        }
        script.push_str("COMMIT;\n");
    }
    scripts
        .iter()
        .enumerate()
        .map(|(w, text)| {
            let path = dir.join(format!("floor_j{jobs}_w{w}.sql"));
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

/// One row of the result table.
struct Round {
    jobs: usize,
    pathfinder: Duration,
    floor: Duration,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() -> ExitCode {
    let opts = support::options::<Options>();
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_migrate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> anyhow::Result<()> {
    support::with_work_dir("migrate", |bin, work| bench(opts, bin, work, opts.tenants))
}

fn bench(opts: &Options, bin: &Path, work_dir: &Path, n: usize) -> anyhow::Result<()> {
    let mut scratch = Scratch::new(&opts.server.url, "migrate")?;

    // 1. Provision N tenants at version 1, in chunks so progress can be shown
    //    (the binary draws no progress bar when stderr is not a terminal).
    let v1 = scratch.create("v1", None)?;
    let v1_url = scratch.url(&v1);
    let users: Vec<String> = (1..=n).map(|i| format!("bench{i:06}")).collect();
    let chunk = (n / 20).clamp(100, 1000);
    let started = Instant::now();
    for (i, names) in users.chunks(chunk).enumerate() {
        let file = work_dir.join("users.txt");
        std::fs::write(&file, names.join("\n") + "\n")?;
        let file = file.to_string_lossy();
        pathfinder(
            bin,
            &v1_url,
            &[
                "provision",
                "--to",
                "1",
                "--from-file",
                &file,
                "--jobs",
                "2",
                "-q",
            ],
        )?;
        let done = i * chunk + names.len();
        eprintln!(
            "provisioned {done}/{n} tenants at version 1 ({:.0} s, {:.0} tenants/s)",
            started.elapsed().as_secs_f64(),
            rate(done, started.elapsed())
        );
    }
    let provision_time = started.elapsed();

    // The V2 statements of every tenant, rendered once by pathfinder-db itself
    // (read-only dry run, so the template database is left as it was).
    let statements = v2_statements(bin, &v1_url)?;
    if statements.len() != n {
        bail!("dry run lists {} tenants, expected {n}", statements.len());
    }
    eprintln!(
        "V2: {} statements per tenant, e.g. {:?}",
        statements[0].len(),
        statements[0]
    );

    // 2. Per job count: pathfinder-db on clone A, the psql floor on clone B.
    let index_count =
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'pf\\_user\\_%\\_pert\\_status\\_ix'";
    let mut rounds = Vec::new();
    let mut migrated: Option<String> = None; // kept for the no-op runs
    for (round, &jobs) in opts.jobs.iter().enumerate() {
        let clone_started = Instant::now();
        let a = scratch.create(&format!("a{jobs}"), Some(&v1))?;
        // Cloning a database of many thousand tenants takes minutes on a slow
        // disk, so the last round's floor runs on the V1 database itself: it is
        // not needed as a template any more.
        let b = if round + 1 == opts.jobs.len() {
            v1.clone()
        } else {
            scratch.create(&format!("b{jobs}"), Some(&v1))?
        };
        eprintln!(
            "jobs {jobs}: cloned the V1 database in {:.1} s",
            clone_started.elapsed().as_secs_f64()
        );
        let (a_url, b_url) = (scratch.url(&a), scratch.url(&b));
        let scripts = write_floor_scripts(work_dir, &statements, jobs)?;
        let jobs_arg = jobs.to_string();

        scratch.checkpoint();
        let (pf_time, _) = pathfinder(
            bin,
            &a_url,
            &["migrate", "--all", "--to", "2", "--jobs", &jobs_arg, "-q"],
        )?;
        eprintln!(
            "jobs {jobs}: pathfinder-db migrate --all: {:.2} s ({:.0} tenants/s)",
            pf_time.as_secs_f64(),
            rate(n, pf_time)
        );

        scratch.checkpoint();
        let floor_time = psql_parallel(&b_url, &scripts)?;
        eprintln!(
            "jobs {jobs}: floor ({jobs} psql sessions): {:.2} s ({:.0} tenants/s)",
            floor_time.as_secs_f64(),
            rate(n, floor_time)
        );

        // Sanity: both clones really are at V2 everywhere.
        let at_v2 = count(
            &a_url,
            "SELECT count(*) FROM pf_tenants WHERE schema_version = 2 AND status = 'active'",
        )?;
        let (ix_a, ix_b) = (count(&a_url, index_count)?, count(&b_url, index_count)?);
        if at_v2 as usize != n || ix_a as usize != n || ix_b as usize != n {
            bail!(
                "after jobs {jobs}: {at_v2} tenants at version 2, V2 index on {ix_a} (pathfinder) and {ix_b} (floor) tenants; expected {n}"
            );
        }

        rounds.push(Round {
            jobs,
            pathfinder: pf_time,
            floor: floor_time,
        });
        scratch.drop_database(&b)?;
        if let Some(old) = migrated.replace(a) {
            scratch.drop_database(&old)?;
        }
        for s in scripts {
            let _ = std::fs::remove_file(s);
        }
    }

    // 3. A no-op run over the N migrated tenants, three times.
    let migrated_url = scratch.url(migrated.as_deref().expect("at least one job count"));
    let mut noops = Vec::new();
    for i in 1..=3 {
        let (t, _) = pathfinder(bin, &migrated_url, &["migrate", "--all", "--to", "2", "-q"])?;
        eprintln!("no-op migrate --all, run {i}: {:.3} s", t.as_secs_f64());
        noops.push(t);
    }

    // The table.
    println!();
    println!(
        "pathfinder-db migrate --all, {n} tenants V1 -> V2, PostgreSQL {}, {} CPU(s)",
        scratch.server_version(),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "(provisioning {n} tenants at V1 with --jobs 2 took {:.0} s)",
        provision_time.as_secs_f64()
    );
    println!();
    println!(
        "| jobs | pathfinder-db s | tenants/s | psql floor s | tenants/s | ratio (target <= 1.2) |"
    );
    println!(
        "|-----:|----------------:|----------:|-------------:|----------:|----------------------:|"
    );
    for r in &rounds {
        let ratio = r.pathfinder.as_secs_f64() / r.floor.as_secs_f64();
        println!(
            "| {:>4} | {:>15.2} | {:>9.0} | {:>12.2} | {:>9.0} | {:>16.2}x {:>3} |",
            r.jobs,
            r.pathfinder.as_secs_f64(),
            rate(n, r.pathfinder),
            r.floor.as_secs_f64(),
            rate(n, r.floor),
            ratio,
            if ratio <= 1.2 { "ok" } else { "NO" }
        );
    }
    println!();
    let worst = noops.iter().max().copied().unwrap_or_default();
    println!(
        "no-op migrate --all over {n} migrated tenants: {} (target <= 1 s: {})",
        noops
            .iter()
            .map(|t| format!("{:.3} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        if worst <= Duration::from_secs(1) {
            "ok"
        } else {
            "NO"
        }
    );
    Ok(())
}
