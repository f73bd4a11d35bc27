//! Fleet throughput on PostgreSQL: provisioning and `migrate --all` of the
//! same tenants into one database (no members), and over 1, 2 and 4 member
//! databases, all on one server.
//!
//! ```sh
//! cargo bench --bench fleet -- --tenants 1000 --members 0,1,2,4
//! ```
//!
//! For each member count it makes a fresh catalog (and members), provisions N
//! tenants at tenant version 3 with `provision --from-file --jobs J`, migrates
//! them to the latest version with `migrate --all --jobs J`, then times a
//! no-op `migrate --all`. It prints tenants/second and the ratio to the run
//! without members (target: aggregate throughput >= 0.95x on one machine;
//! on separate servers the members would add up). See benches/FLEET.md.
//!
//! With `--step S` it measures growth instead: one fleet of the (first) member
//! count, N tenants provisioned at the latest version in steps of S, the
//! milliseconds per tenant of each step (target: the last step within 1.10x
//! of the first), then the no-op `migrate --all` over the whole fleet
//! (target: under 1 s for 4 members x 5,000 tenants). Beside it grows a
//! floor: as many plain databases on the same server, into which psql runs
//! the same tenants' DDL (dealt round-robin, `--jobs` sessions per database,
//! one transaction per tenant) step by step, so that what the server itself
//! drifts as its databases fill shows apart from what pathfinder-db adds.
//! `--floor-in-members` grows the floor in the fleet's own members instead
//! (both then measured at the same catalog sizes, in half the space: on a
//! server on tmpfs, out of the disk's noise); `--no-floor` grows none.
//!
//! ```sh
//! cargo bench --bench fleet -- --tenants 20000 --members 4 --step 2000
//! cargo bench --bench fleet -- --tenants 10000 --members 4 --step 1250 --floor-in-members
//! ```

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Options after `cargo bench --bench fleet --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench fleet --",
    about = "provision and migrate --all over 0, 1, 2, 4 members; or growth with --step"
)]
struct Options {
    /// Tenants per run
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = support::positive)]
    tenants: usize,
    /// Member counts to measure, comma-separated; 0 is the catalog alone
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1,2,4",
        required = false
    )]
    members: Vec<usize>,
    /// --jobs for provision and migrate (per member)
    #[arg(long, short = 'j', default_value_t = 2, value_parser = support::positive)]
    jobs: usize,
    /// Growth instead: one fleet of the first member count, the tenants
    /// provisioned in steps of S (ms per tenant per step, beside the psql
    /// floor), then the no-op migrate --all over all of them
    #[arg(long, value_name = "S", value_parser = support::positive)]
    step: Option<usize>,
    #[command(flatten)]
    server: support::Server,
    /// pathfinder-db binary [default: the release binary]
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Keep the scratch databases
    #[arg(long)]
    keep: bool,
    /// Growth without the psql floor beside it (half the space: a fleet
    /// of 20,000 tenants then fits a server on tmpfs, out of the disk's noise)
    #[arg(long, conflicts_with = "floor_in_members")]
    no_floor: bool,
    /// Growth with the floor's tenants made in the fleet's own members (as
    /// many as pathfinder-db's, each step's two halves in alternating
    /// order): both measured at the same catalog sizes, in the same space
    #[arg(long)]
    floor_in_members: bool,
}

fn database_url(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).expect("a valid --database-url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn recreate(server: &str, name: &str, drop_only: bool) -> String {
    let mut client = postgres::Client::connect(server, postgres::NoTls).unwrap_or_else(|e| {
        eprintln!("error: cannot connect to {server}: {e}");
        std::process::exit(1)
    });
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop scratch database");
    if !drop_only {
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create scratch database");
    }
    database_url(server, name)
}

fn run(binary: &PathBuf, url: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(binary)
        .arg("--database-url")
        .arg(url)
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run pathfinder-db");
    if !out.status.success() {
        eprintln!(
            "error: pathfinder-db {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let opts: Options = support::options();
    if opts.members.is_empty() {
        eprintln!("error: --members names no member count");
        std::process::exit(2);
    }
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => support::release_binary().unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        }),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.txt");
    let names: Vec<String> = (0..opts.tenants).map(|n| format!("f{n:06}")).collect();
    std::fs::write(&users, names.join("\n") + "\n").expect("write users");
    let users = users.to_string_lossy().into_owned();
    let jobs = opts.jobs.to_string();
    println!(
        "fleet: {} tenants, --jobs {}, load {}",
        opts.tenants,
        opts.jobs,
        load()
    );
    if let Some(step) = opts.step {
        growth(&opts, &binary, &names, step, dir.path());
        return;
    }
    println!("members  provision t/s  migrate t/s  no-op migrate s  vs no members (prov, migr)");
    let mut base: Option<(f64, f64)> = None;
    for &m in &opts.members {
        let catalog = new_fleet(&opts.server.url, &binary, m);
        let prov = run(
            &binary,
            &catalog,
            &[
                "provision",
                "--from-file",
                &users,
                "--to",
                "3",
                "--jobs",
                &jobs,
            ],
        );
        let migr = run(&binary, &catalog, &["migrate", "--all", "--jobs", &jobs]);
        let noop = run(&binary, &catalog, &["migrate", "--all"]);
        let (p, g) = (opts.tenants as f64 / prov, opts.tenants as f64 / migr);
        let ratio = match base {
            Some((bp, bg)) => format!("{:.2}, {:.2}", p / bp, g / bg),
            None => "-".into(),
        };
        if m == 0 {
            base = Some((p, g));
        }
        println!("{m:>7}  {p:>13.1}  {g:>11.1}  {noop:>15.3}  {ratio}");
        if !opts.keep {
            drop_fleet(&opts.server.url, m);
        }
    }
}

/// A fresh catalog with `m` members (the catalog drained when there are
/// any, so every tenant goes to a member); returns the catalog's URL.
fn new_fleet(server: &str, binary: &PathBuf, m: usize) -> String {
    let catalog = recreate(server, "pf_bench_fleet_cat", false);
    let members: Vec<String> = (0..m)
        .map(|i| recreate(server, &format!("pf_bench_fleet_m{i}"), false))
        .collect();
    run(binary, &catalog, &["init"]);
    for (i, url) in members.iter().enumerate() {
        run(
            binary,
            &catalog,
            &["databases", "add", &format!("m{i}"), url],
        );
    }
    if m > 0 {
        run(binary, &catalog, &["databases", "drain", "catalog"]);
    }
    catalog
}

fn drop_fleet(server: &str, m: usize) {
    recreate(server, "pf_bench_fleet_cat", true);
    for i in 0..m {
        recreate(server, &format!("pf_bench_fleet_m{i}"), true);
    }
}

/// Provisioning cost as the fleet grows, beside the psql floor growing the
/// same way, then the no-op migrate over the fleet.
fn growth(opts: &Options, binary: &PathBuf, names: &[String], step: usize, dir: &std::path::Path) {
    let m = opts.members[0];
    let catalog = new_fleet(&opts.server.url, binary, m);
    let floors: Vec<String> = if opts.floor_in_members {
        (0..m.max(1))
            .map(|i| match m {
                0 => catalog.clone(),
                _ => database_url(&opts.server.url, &format!("pf_bench_fleet_m{i}")),
            })
            .collect()
    } else {
        (0..m.max(1))
            .filter(|_| !opts.no_floor)
            .map(|i| recreate(&opts.server.url, &format!("pf_bench_fleet_floor{i}"), false))
            .collect()
    };
    let renderer = pathfinder_db::schema::render::Renderer::new(
        pathfinder_db::db::dialect::Dialect::Postgres,
        None,
    )
    .expect("built-in templates");
    let jobs = opts.jobs.to_string();
    println!(
        "step  tenants after  ms per tenant  vs first step  floor ms  floor vs first  drift vs floor's  load"
    );
    if opts.floor_in_members {
        println!(
            "(the floor's tenants are in the same members: they hold twice the tenants shown)"
        );
    }
    let mut first: Option<(f64, f64)> = None;
    for (i, chunk) in names.chunks(step).enumerate() {
        let file = dir.join(format!("step{i}.txt"));
        std::fs::write(&file, chunk.join("\n") + "\n").expect("write users");
        let file = file.to_string_lossy().into_owned();
        let tool = || {
            run(
                binary,
                &catalog,
                &["provision", "--from-file", &file, "--jobs", &jobs],
            )
        };
        // Without a floor its columns are NaN (printed as such). In the
        // members, the floor's tenants are named apart (g... for f...).
        let floor = || {
            if floors.is_empty() {
                return f64::NAN;
            }
            let own: Vec<String> = match opts.floor_in_members {
                true => chunk.iter().map(|n| n.replacen('f', "g", 1)).collect(),
                false => chunk.to_vec(),
            };
            floor_step(&renderer, &floors, &own, opts.jobs, dir)
        };
        let (secs, floor_secs) = if opts.floor_in_members && i % 2 == 1 {
            let f = floor();
            (tool(), f)
        } else {
            let t = tool();
            (t, floor())
        };
        let ms = secs * 1000.0 / chunk.len() as f64;
        let floor_ms = floor_secs * 1000.0 / chunk.len() as f64;
        let (base, floor_base) = *first.get_or_insert((ms, floor_ms));
        println!(
            "{i:>4}  {:>13}  {ms:>13.2}  {:>13.2}  {floor_ms:>8.2}  {:>13.2}  {:>16.2}  {}",
            (i * step + chunk.len()),
            ms / base,
            floor_ms / floor_base,
            (ms / base) / (floor_ms / floor_base),
            load()
        );
    }
    let noop = (0..3)
        .map(|_| run(binary, &catalog, &["migrate", "--all"]))
        .fold(f64::INFINITY, f64::min);
    println!(
        "no-op migrate --all over {} tenants on {m} members: {noop:.3} s (best of 3; target < 1 s)",
        names.len()
    );
    if !opts.keep {
        drop_fleet(&opts.server.url, m);
        for i in (0..floors.len()).filter(|_| !opts.floor_in_members) {
            recreate(&opts.server.url, &format!("pf_bench_fleet_floor{i}"), true);
        }
    }
}

/// The floor of one growth step: `users`' tenant DDL (rendered untimed)
/// dealt round-robin over the floor databases, `jobs` psql sessions per
/// database, one transaction per tenant, all sessions at once; seconds taken.
fn floor_step(
    renderer: &pathfinder_db::schema::render::Renderer,
    floors: &[String],
    users: &[String],
    jobs: usize,
    dir: &std::path::Path,
) -> f64 {
    use pathfinder_db::db::dialect::Dialect;
    use pathfinder_db::schema::render::script;
    use pathfinder_db::schema::tenant::TenantKey;
    let sessions = floors.len() * jobs;
    let mut scripts = vec![String::new(); sessions];
    for (n, user) in users.iter().enumerate() {
        let key = TenantKey::parse(user, Dialect::Postgres).expect("a valid name");
        let out = &mut scripts[n % sessions];
        out.push_str("BEGIN;\n");
        for m in renderer.tenant_migrations(&key).expect("render") {
            out.push_str(&script(&m.statements, Dialect::Postgres));
        }
        out.push_str("COMMIT;\n");
    }
    let files: Vec<(String, PathBuf)> = scripts
        .iter()
        .enumerate()
        .map(|(k, text)| {
            let file = dir.join(format!("floor_{k}.sql"));
            std::fs::write(&file, text).expect("write floor script");
            (floors[k % floors.len()].clone(), file)
        })
        .collect();
    // Every session starts at once, whichever database it writes.
    let started = Instant::now();
    std::thread::scope(|s| {
        for (url, file) in &files {
            s.spawn(move || {
                support::psql_parallel(url, std::slice::from_ref(file)).expect("floor psql")
            });
        }
    });
    started.elapsed().as_secs_f64()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
