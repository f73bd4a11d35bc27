//! Benchmark of `pathfinder-db retention run --all` on PostgreSQL (run by
//! hand, not a test). See benches/RETENTION.md.
//!
//! ```sh
//! cargo bench --bench retention -- [--tenants 100] [--rows 1000000] [--jobs 2] \
//!     [--batch-size N] [--rounds 2] [--server-url URL] [--compare-bin PATH]
//! ```
//!
//! What it does:
//! 1. creates a scratch database, provisions the
//!    tenants, creates their archive tables (a run that moves one marker row
//!    per table, the archives then emptied), applies two policies (chat messages after 365 days by created_at,
//!    career analytics after 1095 days by metric_date) and seeds every tenant
//!    with rows that are all due: 90 % chat messages, 10 % career analytics;
//! 2. per round, clones that database twice and times, on one clone,
//!    `pathfinder-db retention run --all --jobs J`, and on the other the floor:
//!    the same moves by plain SQL (`INSERT INTO <archive> SELECT ... WHERE <age>
//!    < <cutoff>; DELETE FROM <live> WHERE <age> < <cutoff>`), one transaction
//!    per table and tenant, through J `psql` sessions started together;
//! 3. checks that both moved every row, prints rows/s of both and the ratio
//!    (target: pathfinder-db >= 0.9 x the floor, issue 16), and drops its databases.

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::{Scratch, pathfinder_timed as pathfinder, psql_parallel};

use anyhow::bail;
use postgres::{Client, NoTls};

/// Options after `cargo bench --bench retention --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench retention --",
    about = "retention run --all against INSERT ... SELECT + DELETE"
)]
struct Options {
    /// Tenants to sweep
    #[arg(long, default_value_t = 100, value_parser = support::positive)]
    tenants: usize,
    /// Due rows in all, spread evenly over the tenants (at least 10 a tenant)
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Job counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "2", value_parser = support::positive)]
    jobs: Vec<usize>,
    /// The sweep's batch size [default: pathfinder-db's own]
    #[arg(long, value_parser = support::positive)]
    batch_size: Option<usize>,
    /// Rounds, the order of the two runs alternating
    #[arg(long, default_value_t = 2, value_parser = support::positive)]
    rounds: usize,
    #[command(flatten)]
    server: support::Server,
    /// Another pathfinder-db binary (an earlier build) timed in the same rounds
    /// on a clone of its own, for before/after figures on a machine whose load
    /// moves from one minute to the next
    #[arg(long, value_name = "PATH")]
    compare_bin: Option<PathBuf>,
}

/// The two swept tables: (table, age column, days).
const TABLES: [(&str, &str, u32); 2] = [
    ("chat_messages", "created_at", 365),
    ("career_analytics", "metric_date", 1095),
];

fn policies(dir: &Path, days: Option<u32>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (table, column, d) in TABLES {
        std::fs::write(
            dir.join(format!("bench-{table}.toml")),
            format!(
                "tables = [\"pf_user_*_{table}\"]\nage_column = \"{column}\"\nretention_days = {}\n",
                days.unwrap_or(d)
            ),
        )?;
    }
    Ok(())
}

/// Rows of every tenant, all due: messages (in 30 live conversations) and
/// analytics (one metric a day).
fn seed(url: &str, users: &[String], per_tenant: usize) -> anyhow::Result<()> {
    let analytics = per_tenant / 10;
    let messages = per_tenant - analytics;
    let mut client = Client::connect(url, NoTls)?;
    let started = Instant::now();
    for (i, u) in users.iter().enumerate() {
        client.batch_execute(&format!(
            "INSERT INTO pf_user_{u}_chat_conversations (id, title, created_at) \
               SELECT 'conv-' || i, 'Conversation ' || i, LOCALTIMESTAMP - INTERVAL '800 days' FROM generate_series(1, 30) i;\n\
             INSERT INTO pf_user_{u}_chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
               SELECT gen_random_uuid()::text, 'conv-' || (i % 30 + 1), CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, \
                      repeat('a few words of a chat message ', 2 + i % 8), i % 700, \
                      LOCALTIMESTAMP - INTERVAL '400 days' - i * INTERVAL '1 minute' \
               FROM generate_series(1, {messages}) i;\n\
             INSERT INTO pf_user_{u}_career_analytics (id, metric_date, metric_type, metric_value, metric_data) \
               SELECT gen_random_uuid()::text, CURRENT_DATE - 1100 - i, 'applications', i % 100, '{{\"source\": \"bench\"}}' \
               FROM generate_series(1, {analytics}) i;"
        ))?;
        if (i + 1) % 20 == 0 || i + 1 == users.len() {
            eprintln!(
                "seeded {}/{} tenants ({:.0} s)",
                i + 1,
                users.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    client.batch_execute("VACUUM ANALYZE")?;
    Ok(())
}

/// The floor's scripts: tenants dealt round-robin to `jobs` sessions; per
/// tenant and table one transaction with the INSERT ... SELECT and the DELETE.
fn floor_scripts(
    dir: &Path,
    users: &[String],
    columns: &[(String, Vec<String>)],
    jobs: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut scripts = vec![String::new(); jobs];
    for (i, u) in users.iter().enumerate() {
        let script = &mut scripts[i % jobs];
        for (table, column, days) in TABLES {
            let cols = &columns.iter().find(|(t, _)| t == table).unwrap().1;
            let cols = cols.join(", ");
            let live = format!("pf_user_{u}_{table}");
            let due = format!("{column} < LOCALTIMESTAMP - INTERVAL '{days} days'");
            writeln!(
                script,
                "BEGIN;\nINSERT INTO {live}_archive ({cols}, archived_at) SELECT {cols}, LOCALTIMESTAMP FROM {live} WHERE {due};\n\
                 DELETE FROM {live} WHERE {due};\nCOMMIT;"
            )?;
        }
    }
    scripts
        .iter()
        .enumerate()
        .map(|(w, text)| {
            let path = dir.join(format!("floor_w{w}.sql"));
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

/// (live rows left, archived rows) over every tenant's swept tables.
fn moved(url: &str, users: &[String]) -> anyhow::Result<(i64, i64)> {
    let mut client = Client::connect(url, NoTls)?;
    let (mut live, mut archived) = (0, 0);
    for u in users {
        for (table, _, _) in TABLES {
            live += client
                .query_one(&format!("SELECT count(*) FROM pf_user_{u}_{table}"), &[])?
                .get::<_, i64>(0);
            archived += client
                .query_one(
                    &format!("SELECT count(*) FROM pf_user_{u}_{table}_archive"),
                    &[],
                )?
                .get::<_, i64>(0);
        }
    }
    Ok((live, archived))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() -> ExitCode {
    let opts: Options = support::options();
    if opts.rows < opts.tenants * 10 {
        eprintln!("bench_retention: --rows must be at least 10 a tenant");
        return ExitCode::from(2);
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_retention: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> anyhow::Result<()> {
    support::with_work_dir("retention", |bin, work| bench(opts, bin, work))
}

struct Round {
    jobs: usize,
    pathfinder: Duration,
    floor: Duration,
    /// `--compare-bin`'s time.
    other: Option<Duration>,
    /// The 1-minute load average when the round ended.
    load: f64,
}

/// The 1-minute load average (Linux), 0 where unknown.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn bench(opts: &Options, bin: &Path, work_dir: &Path) -> anyhow::Result<()> {
    let mut scratch = Scratch::new(&opts.server.url, "retention")?;
    let per_tenant = opts.rows / opts.tenants;
    let total = per_tenant * opts.tenants;
    let users: Vec<String> = (1..=opts.tenants).map(|i| format!("bench{i:05}")).collect();

    // 1. The base database.
    let base = scratch.create("base", None)?;
    let base_url = scratch.url(&base);
    let file = work_dir.join("users.txt");
    std::fs::write(&file, users.join("\n") + "\n")?;
    let started = Instant::now();
    pathfinder(
        bin,
        &base_url,
        &[
            "provision",
            "--from-file",
            &file.to_string_lossy(),
            "--jobs",
            "2",
            "-q",
        ],
    )?;
    eprintln!(
        "provisioned {} tenants in {:.0} s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    // The archive tables, made by a run that moves one row a tenant and
    // table (a sweep makes an archive when it first needs one), emptied
    // again: both timed runs then only move rows. Then the real policies.
    {
        let mut client = Client::connect(&base_url, NoTls)?;
        for u in &users {
            client.batch_execute(&format!(
                "INSERT INTO pf_user_{u}_chat_conversations (id, title) VALUES ('marker', 'marker');\n\
                 INSERT INTO pf_user_{u}_chat_messages (id, conversation_id, role, content, created_at) \
                   VALUES ('marker', 'marker', 'user', 'marker', TIMESTAMP '1900-01-01 00:00:00');\n\
                 INSERT INTO pf_user_{u}_career_analytics (id, metric_date, metric_type, metric_value) \
                   VALUES ('marker', DATE '1900-01-01', 'applications', 0);"
            ))?;
        }
    }
    let stop_file = work_dir.join("never.stop");
    let stop_file = stop_file.to_string_lossy();
    let dir = work_dir.join("policies");
    policies(&dir, Some(36_500))?;
    let dir_arg = dir.to_string_lossy();
    pathfinder(
        bin,
        &base_url,
        &["policies", "apply", "--dir", &dir_arg, "-q"],
    )?;
    pathfinder(
        bin,
        &base_url,
        &["retention", "run", "--all", "--stop-file", &stop_file, "-q"],
    )?;
    {
        let mut client = Client::connect(&base_url, NoTls)?;
        for u in &users {
            client.batch_execute(&format!(
                "TRUNCATE pf_user_{u}_chat_messages_archive, pf_user_{u}_career_analytics_archive"
            ))?;
        }
    }
    policies(&dir, None)?;
    pathfinder(
        bin,
        &base_url,
        &["policies", "apply", "--dir", &dir_arg, "-q"],
    )?;
    seed(&base_url, &users, per_tenant)?;
    let columns: Vec<(String, Vec<String>)> = {
        let mut client = Client::connect(&base_url, NoTls)?;
        TABLES
            .iter()
            .map(|(t, _, _)| {
                let rows = client.query(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
                    &[&format!("pf_user_{}_{t}", users[0])],
                )?;
                Ok((t.to_string(), rows.iter().map(|r| r.get(0)).collect()))
            })
            .collect::<anyhow::Result<_>>()?
    };

    // 2. The rounds.
    let mut rounds = Vec::new();
    for round in 0..opts.rounds {
        for &jobs in &opts.jobs {
            let a = scratch.create(&format!("a{round}_{jobs}"), Some(&base))?;
            let b = scratch.create(&format!("b{round}_{jobs}"), Some(&base))?;
            let c = match &opts.compare_bin {
                Some(_) => Some(scratch.create(&format!("c{round}_{jobs}"), Some(&base))?),
                None => None,
            };
            let (a_url, b_url) = (scratch.url(&a), scratch.url(&b));
            let c_url = c.as_ref().map(|c| scratch.url(c));
            let scripts = floor_scripts(work_dir, &users, &columns, jobs)?;
            let jobs_arg = jobs.to_string();
            let batch_arg = opts.batch_size.map(|b| b.to_string());
            let time_pathfinder = |scratch: &mut Scratch,
                                   bin: &Path,
                                   url: &str,
                                   what: &str|
             -> anyhow::Result<Duration> {
                scratch.checkpoint();
                let mut args = vec![
                    "retention",
                    "run",
                    "--all",
                    "--jobs",
                    &jobs_arg,
                    "--stop-file",
                    &stop_file,
                    "-q",
                ];
                if let Some(b) = &batch_arg {
                    args.extend(["--batch-size", b.as_str()]);
                }
                let (t, _) = pathfinder(bin, url, &args)?;
                eprintln!(
                    "round {round}, jobs {jobs}: {what} retention run: {:.2} s ({:.0} rows/s)",
                    t.as_secs_f64(),
                    rate(total, t)
                );
                Ok(t)
            };
            let time_floor = |scratch: &mut Scratch| -> anyhow::Result<Duration> {
                scratch.checkpoint();
                let t = psql_parallel(&b_url, &scripts)?;
                eprintln!(
                    "round {round}, jobs {jobs}: floor ({jobs} psql sessions): {:.2} s ({:.0} rows/s)",
                    t.as_secs_f64(),
                    rate(total, t)
                );
                Ok(t)
            };
            // The order alternates, so neither always meets a warmer server.
            // (With --compare-bin the other binary runs between the two.)
            let mut other = None;
            let mut time_other = |scratch: &mut Scratch| -> anyhow::Result<()> {
                if let (Some(bin), Some(url)) = (&opts.compare_bin, &c_url) {
                    other = Some(time_pathfinder(scratch, bin, url, "--compare-bin")?);
                }
                Ok(())
            };
            let (pf, floor) = if round % 2 == 0 {
                let pf = time_pathfinder(&mut scratch, bin, &a_url, "pathfinder-db")?;
                time_other(&mut scratch)?;
                (pf, time_floor(&mut scratch)?)
            } else {
                let floor = time_floor(&mut scratch)?;
                time_other(&mut scratch)?;
                (
                    time_pathfinder(&mut scratch, bin, &a_url, "pathfinder-db")?,
                    floor,
                )
            };
            let mut check = vec![("pathfinder-db", &a_url), ("floor", &b_url)];
            if let Some(url) = &c_url {
                check.push(("--compare-bin", url));
            }
            for (what, url) in check {
                let (live, archived) = moved(url, &users)?;
                if live != 0 || archived as usize != total {
                    bail!(
                        "{what}: {live} rows left live, {archived} archived; expected 0 and {total}"
                    );
                }
            }
            rounds.push(Round {
                jobs,
                pathfinder: pf,
                floor,
                other,
                load: load_average(),
            });
            scratch.drop_database(&a)?;
            scratch.drop_database(&b)?;
            if let Some(c) = &c {
                scratch.drop_database(c)?;
            }
        }
    }

    let version = scratch.server_version();
    println!();
    println!(
        "pathfinder-db retention run --all: {total} due rows ({} chat messages and {} career analytics per tenant) \
         in {} tenants, --batch-size {}, PostgreSQL {version}, {} CPU(s)",
        per_tenant - per_tenant / 10,
        per_tenant / 10,
        opts.tenants,
        opts.batch_size
            .map(|b| b.to_string())
            .unwrap_or_else(|| "default".into()),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "floor: INSERT INTO <archive> SELECT ... + DELETE per table and tenant, one transaction each, one psql session per job"
    );
    println!();
    let compared = opts.compare_bin.is_some();
    println!(
        "| round | jobs | pathfinder-db s | rows/s | floor s | rows/s | ratio (target >= 0.9) | load |{}",
        if compared {
            " --compare-bin s | its ratio |"
        } else {
            ""
        }
    );
    println!(
        "|------:|-----:|----------------:|-------:|--------:|-------:|----------------------:|-----:|{}",
        if compared {
            "----------------:|----------:|"
        } else {
            ""
        }
    );
    for (i, r) in rounds.iter().enumerate() {
        let ratio = r.floor.as_secs_f64() / r.pathfinder.as_secs_f64();
        let other = r
            .other
            .map(|o| {
                format!(
                    " {:>15.2} | {:>8.2}x |",
                    o.as_secs_f64(),
                    r.floor.as_secs_f64() / o.as_secs_f64()
                )
            })
            .unwrap_or_default();
        println!(
            "| {:>5} | {:>4} | {:>15.2} | {:>6.0} | {:>7.2} | {:>6.0} | {:>17.2}x {:>3} | {:>4.1} |{other}",
            i / opts.jobs.len(),
            r.jobs,
            r.pathfinder.as_secs_f64(),
            rate(total, r.pathfinder),
            r.floor.as_secs_f64(),
            rate(total, r.floor),
            ratio,
            if ratio >= 0.9 { "ok" } else { "NO" },
            r.load
        );
    }
    for &jobs in &opts.jobs {
        let of = |f: fn(&Round) -> Duration| {
            rounds
                .iter()
                .filter(|r| r.jobs == jobs)
                .map(f)
                .min()
                .unwrap_or_default()
        };
        let (pf, floor) = (of(|r| r.pathfinder), of(|r| r.floor));
        println!(
            "jobs {jobs}, best of {}: pathfinder-db {:.0} rows/s, floor {:.0} rows/s, ratio {:.2}",
            opts.rounds,
            rate(total, pf),
            rate(total, floor),
            floor.as_secs_f64() / pf.as_secs_f64()
        );
    }
    Ok(())
}
