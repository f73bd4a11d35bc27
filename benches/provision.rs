//! Provisioning throughput on PostgreSQL: pathfinder-db against the raw-SQL
//! floor (the same rendered DDL run by plain psql, one transaction per tenant).
//!
//! ```sh
//! cargo bench --bench provision -- --tenants 500
//! ```
//!
//! For every job count (default 1 and 2) it provisions N tenants into a fresh
//! database with the release binary (`pathfinder-db provision --from-file
//! users.txt --jobs J`), then runs the DDL that `pathfinder-db render <user>
//! --dialect postgres` prints for the same users through J psql sessions, each
//! wrapping every tenant in BEGIN/COMMIT, into another fresh database. It prints
//! tenants/second for both and the ratio pathfinder-db / psql (target >= 0.9).
//! See benches/README.md.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The psql floor's shape.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum Floor {
    /// One psql session per job, BEGIN/COMMIT per tenant (the same connection
    /// count as pathfinder-db)
    Session,
    /// `psql -1 -f tenant.sql` per tenant (a process and a connection per
    /// tenant: a slower floor)
    Files,
}

/// Options after `cargo bench --bench provision --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench provision --",
    about = "provision --from-file against the same DDL through psql"
)]
struct Options {
    /// Tenants per run
    #[arg(long, short = 'n', default_value_t = 500, value_parser = support::positive)]
    tenants: usize,
    /// Job counts to measure, comma-separated
    #[arg(long, short = 'j', value_delimiter = ',', default_value = "1,2", value_parser = support::positive)]
    jobs: Vec<usize>,
    /// Runs per measurement, alternating which tool goes first; the fastest
    /// round of each tool is reported, and the ratio of the medians beside it
    #[arg(long, default_value_t = 3, value_parser = support::positive)]
    rounds: usize,
    #[command(flatten)]
    server: support::Server,
    /// pathfinder-db binary [default: the release binary cargo bench builds with this benchmark]
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The psql floor
    #[arg(long, value_enum, default_value_t = Floor::Session)]
    floor: Floor,
    /// Keep the scratch databases
    #[arg(long)]
    keep: bool,
}

/// `--binary`, else the release binary `cargo bench` built with this benchmark.
fn find_binary(opts: &Options) -> Result<PathBuf, String> {
    match &opts.binary {
        Some(b) => Ok(b.clone()),
        None => support::release_binary().map_err(|e| e.to_string()),
    }
}

/// The server URL with another database name.
fn database_url(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).expect("a valid --database-url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn admin(server: &str) -> postgres::Client {
    postgres::Client::connect(server, postgres::NoTls).unwrap_or_else(|e| {
        eprintln!("error: cannot connect to {server}: {e}");
        std::process::exit(1)
    })
}

fn create_database(server: &str, name: &str) -> String {
    let mut client = admin(server);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop scratch database");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create scratch database");
    database_url(server, name)
}

/// Lets the server settle before a timed run: dropping and creating databases
/// leaves a checkpoint and file removal behind that would otherwise slow down
/// whichever run comes first. CHECKPOINT needs superuser or pg_checkpoint; without
/// it the pause alone has to do.
fn settle(server: &str) {
    let _ = admin(server).batch_execute("CHECKPOINT");
    std::thread::sleep(Duration::from_millis(500));
}

fn drop_database(server: &str, name: &str) {
    let _ = admin(server).batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        eprintln!(
            "error: {what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
}

/// Each user's DDL as `pathfinder-db render` prints it (several renders at once).
fn render_all(binary: &Path, users: &[String]) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = users.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|user| {
                            let out = Command::new(binary)
                                .args(["render", user, "--dialect", "postgres"])
                                .env_remove("PATHFINDER_DATABASE_URL")
                                .env_remove("PATHFINDER_CONFIG")
                                .output()
                                .expect("pathfinder-db render");
                            assert!(out.status.success(), "render {user} failed");
                            String::from_utf8(out.stdout).expect("UTF-8 DDL")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("render thread"))
            .collect()
    })
}

/// Counts what a run created, so a broken run is never reported as fast.
fn check_created(url: &str, tenants: usize, what: &str) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let matviews: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_matviews WHERE matviewname LIKE 'pf\\_user\\_%\\_career\\_summary'",
            &[],
        )
        .expect("count")
        .get(0);
    if matviews as usize != tenants {
        eprintln!("error: {what} created {matviews} career summaries, expected {tenants}");
        std::process::exit(1);
    }
}

/// pathfinder-db provision --jobs J into a fresh database; seconds taken.
fn time_pathfinder(
    binary: &Path,
    server: &str,
    db: &str,
    users_file: &Path,
    tenants: usize,
    jobs: usize,
) -> f64 {
    let url = create_database(server, db);
    let pf = |args: &[&str]| {
        let mut c = Command::new(binary);
        c.arg("--database-url")
            .arg(&url)
            .arg("--quiet")
            .args(args)
            .env_remove("PATHFINDER_CONFIG")
            .env_remove("PATHFINDER_JOBS");
        c
    };
    // The system schema is created once, untimed: the floor has none either.
    run_checked(&mut pf(&["init"]), "pathfinder-db init");
    let jobs = jobs.to_string();
    let mut cmd = pf(&["provision", "--jobs", &jobs, "--from-file"]);
    cmd.arg(users_file);
    settle(server);
    let started = Instant::now();
    run_checked(&mut cmd, "pathfinder-db provision");
    let secs = started.elapsed().as_secs_f64();
    check_created(&url, tenants, "pathfinder-db");
    secs
}

/// The same DDL through psql with the same parallelism; seconds taken.
fn time_psql(
    scratch: &Path,
    server: &str,
    db: &str,
    ddl: &[String],
    jobs: usize,
    floor: Floor,
) -> f64 {
    let url = create_database(server, db);
    let psql = |file: &Path, single_transaction: bool| {
        let mut c = Command::new("psql");
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url]);
        if single_transaction {
            c.arg("-1");
        }
        c.arg("-f").arg(file).stdout(Stdio::null());
        c
    };
    let secs = match floor {
        Floor::Session => {
            // One script per session, tenants dealt round-robin, one
            // transaction per tenant. Written before the clock starts.
            let files: Vec<PathBuf> = (0..jobs)
                .map(|j| {
                    let mut script = String::new();
                    for tenant in ddl.iter().skip(j).step_by(jobs) {
                        script.push_str("BEGIN;\n");
                        script.push_str(tenant);
                        script.push_str("\nCOMMIT;\n");
                    }
                    let file = scratch.join(format!("session_{j}.sql"));
                    std::fs::write(&file, script).expect("write script");
                    file
                })
                .collect();
            settle(server);
            let started = Instant::now();
            let children: Vec<_> = files
                .iter()
                .map(|f| psql(f, false).spawn().expect("spawn psql"))
                .collect();
            for mut child in children {
                let status = child.wait().expect("wait psql");
                assert!(status.success(), "psql failed: {status}");
            }
            started.elapsed().as_secs_f64()
        }
        Floor::Files => {
            let files: Vec<PathBuf> = ddl
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let file = scratch.join(format!("tenant_{i}.sql"));
                    std::fs::write(&file, text).expect("write script");
                    file
                })
                .collect();
            let next = std::sync::atomic::AtomicUsize::new(0);
            settle(server);
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let status = psql(file, true).status().expect("psql");
                            assert!(status.success(), "psql -1 -f {} failed", file.display());
                        }
                    });
                }
            });
            started.elapsed().as_secs_f64()
        }
    };
    check_created(&url, ddl.len(), "psql");
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let opts: Options = support::options();
    let binary = find_binary(&opts).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    if Command::new("psql").arg("--version").output().is_err() {
        eprintln!("error: psql is not on PATH: it is the floor this benchmark compares with");
        std::process::exit(2);
    }
    let version: String = admin(&opts.server.url)
        .query_one("SHOW server_version", &[])
        .expect("server version")
        .get(0);

    let scratch = tempfile::tempdir().expect("scratch dir");
    let users: Vec<String> = (1..=opts.tenants).map(|i| format!("bench_{i}")).collect();
    let users_file = scratch.path().join("users.txt");
    std::fs::write(&users_file, users.join("\n") + "\n").expect("write users.txt");
    let rendering = Instant::now();
    let ddl = render_all(&binary, &users);
    let shown = {
        let mut u = url::Url::parse(&opts.server.url).expect("URL");
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string()
    };
    let floor = match opts.floor {
        Floor::Session => "one psql session per job, BEGIN/COMMIT per tenant",
        Floor::Files => "`psql -1 -f tenant.sql` per tenant",
    };
    println!(
        "pathfinder-db provisioning benchmark: {} tenants, PostgreSQL {version} at {shown}",
        opts.tenants
    );
    println!("binary: {}", binary.display());
    println!(
        "floor: the DDL of `pathfinder-db render` through psql, {floor} (rendered in {:.1} s, untimed)",
        rendering.elapsed().as_secs_f64()
    );
    println!(
        "best of {} round(s); other processes only ever slow a round down",
        opts.rounds
    );
    println!();
    println!(
        "{:>4}  {:>20}  {:>20}  {:>6}  {:>13}",
        "jobs", "pathfinder-db", "psql floor", "ratio", "median ratio"
    );

    let pid = std::process::id();
    let mut worst: f64 = f64::INFINITY;
    for &jobs in &opts.jobs {
        let mut pf_rates = Vec::new();
        let mut floor_rates = Vec::new();
        for round in 0..opts.rounds {
            let pf_db = format!("pf_bench_{pid}_pf_j{jobs}_r{round}");
            let psql_db = format!("pf_bench_{pid}_psql_j{jobs}_r{round}");
            // Alternate which goes first, so neither always meets a warmer server.
            let (pf_secs, psql_secs) = if round % 2 == 0 {
                let a = time_pathfinder(
                    &binary,
                    &opts.server.url,
                    &pf_db,
                    &users_file,
                    opts.tenants,
                    jobs,
                );
                let b = time_psql(
                    scratch.path(),
                    &opts.server.url,
                    &psql_db,
                    &ddl,
                    jobs,
                    opts.floor,
                );
                (a, b)
            } else {
                let b = time_psql(
                    scratch.path(),
                    &opts.server.url,
                    &psql_db,
                    &ddl,
                    jobs,
                    opts.floor,
                );
                let a = time_pathfinder(
                    &binary,
                    &opts.server.url,
                    &pf_db,
                    &users_file,
                    opts.tenants,
                    jobs,
                );
                (a, b)
            };
            if !opts.keep {
                drop_database(&opts.server.url, &pf_db);
                drop_database(&opts.server.url, &psql_db);
            }
            pf_rates.push(opts.tenants as f64 / pf_secs);
            floor_rates.push(opts.tenants as f64 / psql_secs);
            eprintln!(
                "  jobs {jobs}, round {}: pathfinder-db {pf_secs:.2} s, psql {psql_secs:.2} s",
                round + 1
            );
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let pf = best(&pf_rates);
        let floor = best(&floor_rates);
        let ratio = pf / floor;
        let median_ratio = median(pf_rates) / median(floor_rates);
        worst = worst.min(ratio);
        println!(
            "{jobs:>4}  {:>20}  {:>20}  {ratio:>6.2}  {median_ratio:>13.2}",
            format!("{pf:.1} tenants/s"),
            format!("{floor:.1} tenants/s"),
        );
    }
    println!();
    println!(
        "target: ratio >= 0.90 for every job count: {}",
        if worst >= 0.9 { "met" } else { "NOT met" }
    );
}
