//! Benchmark of `pathfinder-db keys rotate` on PostgreSQL (run by hand, not a test).
//!
//! ```sh
//! cargo bench --bench keys -- [--keys N] [--jobs 1,2] [--batch-size B] [--repeats R] [--server-url URL]
//! ```
//!
//! Defaults: 100,000 keys, job counts 1 and 2, batches of 100, best of 3 runs, server
//! `postgres://postgres@127.0.0.1:5432/postgres` (or `PATHFINDER_BENCH_POSTGRES_URL`).
//! The user must be allowed to create databases. See benches/KEYS.md.
//!
//! What it does:
//! 1. creates a scratch database with the system schema
//!    (`pathfinder-db init`), and loads N users and N keys wrapped by master key K0
//!    (wrapped by the library, loaded with COPY);
//! 2. for each job count J, R times in turn (the best of each is reported: the
//!    machine is shared, and the best run is the least disturbed one):
//!    - **pathfinder-db**: times `pathfinder-db keys rotate --new-master-key-file K(next)
//!      --batch-size B --jobs J` (process start to exit) with the current key
//!      configured, and checks that every key moved;
//!    - **the floor**: re-wraps every key under the next master key *before* the clock
//!      starts, then times only the same conditional UPDATEs, run by J connections of
//!      the `postgres` crate with prepared statements, one transaction per B keys;
//!    - before each timed run, vacuums the table (the previous run's dead rows go, so
//!      both start alike) and runs CHECKPOINT;
//!    - prints both as keys/second, their CPU time, and the ratio (target: pathfinder-db
//!      >= 0.7x the floor);
//! 3. drops the scratch database (also when a step fails).

#[path = "support/mod.rs"]
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use postgres::{Client, NoTls};

use pathfinder_db::security::crypto::{self, DataKey, Keyring, MasterKey};
use pathfinder_db::security::keys::{read_master_key_file, write_new_master_key};

/// The UPDATE `keys rotate` runs for each key (see `src/security/keys.rs`).
const UPDATE: &str = "UPDATE pf_encryption_keys SET key_encrypted = $1, key_salt = $2, master_key_id = $3, \
     rotation_count = COALESCE(rotation_count, 0) + 1, last_rotated = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') \
     WHERE id = $4 AND key_encrypted = $5";

/// Options after `cargo bench --bench keys --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench keys --",
    about = "keys rotate against the same conditional UPDATEs by prepared statements"
)]
struct Options {
    /// Keys to rotate
    #[arg(long, default_value_t = 100_000, value_parser = support::positive)]
    keys: usize,
    /// Runs per job count (the best is reported)
    #[arg(long, default_value_t = 3, value_parser = support::positive)]
    repeats: usize,
    /// Job counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = support::positive)]
    jobs: Vec<usize>,
    /// Keys per transaction
    #[arg(long, default_value_t = 100, value_parser = support::positive)]
    batch_size: usize,
    #[command(flatten)]
    server: support::Server,
}

/// `postgres://u@h:p/db?x` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The scratch database; dropped when this goes out of scope (also on errors).
struct Scratch {
    admin: Client,
    name: String,
    url: String,
}

impl Scratch {
    fn new(server_url: &str) -> anyhow::Result<Scratch> {
        let mut admin = Client::connect(server_url, NoTls)
            .with_context(|| format!("connecting to {server_url}"))?;
        let name = format!("bench_keys_{}", std::process::id());
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = with_database(server_url, &name);
        Ok(Scratch { admin, name, url })
    }

    /// Before each timed run: the previous run's dead rows vacuumed (both runs
    /// start from the same kind of table) and dirty buffers flushed.
    fn settle(&mut self) -> anyhow::Result<()> {
        let mut client = Client::connect(&self.url, NoTls)?;
        client.batch_execute("VACUUM ANALYZE pf_encryption_keys")?;
        let _ = self.admin.batch_execute("CHECKPOINT");
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        match self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            Ok(()) => eprintln!("dropped {}", self.name),
            Err(e) => eprintln!("could not drop {}: {e}", self.name),
        }
    }
}

/// CPU time (user + system) of the children this process has waited for.
fn children_cpu() -> Duration {
    cpu(libc::RUSAGE_CHILDREN)
}

/// CPU time (user + system) of `who` (RUSAGE_SELF, RUSAGE_CHILDREN).
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs pathfinder-db; returns its wall time and CPU time.
fn pathfinder(bin: &Path, url: &str, args: &[&str]) -> anyhow::Result<(Duration, Duration)> {
    let cpu_before = children_cpu();
    let (elapsed, _) = support::pathfinder_timed(bin, url, args)?;
    Ok((elapsed, children_cpu() - cpu_before))
}

/// Loads `n` users and their keys, wrapped by `master`, with COPY.
fn load(url: &str, master: &MasterKey, n: usize) -> anyhow::Result<()> {
    let mut client = Client::connect(url, NoTls)?;
    let mut users = String::new();
    let mut keys = String::new();
    for i in 0..n {
        let user_id = format!("00000000-0000-4000-8000-{i:012}");
        let key_id = uuid::Uuid::new_v4();
        users.push_str(&format!(
            "{user_id}\tbench{i:06}\tbench{i:06}@example.com\tx\n"
        ));
        let wrapped = crypto::wrap(master, &user_id, &DataKey::generate()?)?;
        keys.push_str(&format!(
            "{key_id}\t{user_id}\t{}\t{}\tAES-256-GCM\t0\t{}\n",
            wrapped.key_encrypted, wrapped.key_salt, wrapped.master_key_id
        ));
    }
    let mut w = client.copy_in("COPY pf_users (id, username, email, password_hash) FROM STDIN")?;
    w.write_all(users.as_bytes())?;
    w.finish()?;
    let mut w = client.copy_in(
        "COPY pf_encryption_keys (id, user_id, key_encrypted, key_salt, algorithm, rotation_count, master_key_id) FROM STDIN",
    )?;
    w.write_all(keys.as_bytes())?;
    w.finish()?;
    // One statement per call: VACUUM cannot run in the implicit transaction of a batch.
    client.batch_execute("VACUUM ANALYZE pf_users")?;
    client.batch_execute("VACUUM ANALYZE pf_encryption_keys")?;
    Ok(())
}

/// One precomputed UPDATE: new text, new salt, new id, row id, old text.
type Update = [String; 5];

/// Re-wraps every key under `next` (untimed), for the floor.
fn precompute(url: &str, current: &Keyring, next: &MasterKey) -> anyhow::Result<Vec<Update>> {
    let mut client = Client::connect(url, NoTls)?;
    let rows = client.query(
        "SELECT id, user_id, key_encrypted, key_salt FROM pf_encryption_keys ORDER BY id",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            let (id, user_id, old, salt): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let data_key = current
                .unwrap(&user_id, &old, &salt)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let w = crypto::wrap(next, &user_id, &data_key)?;
            Ok([
                w.key_encrypted,
                w.key_salt,
                w.master_key_id.to_string(),
                id,
                old,
            ])
        })
        .collect()
}

/// The floor: the same UPDATEs with precomputed values, `jobs` connections,
/// one transaction per `batch` keys. Returns the wall time.
fn floor(url: &str, updates: &[Update], jobs: usize, batch: usize) -> anyhow::Result<Duration> {
    let chunks: Vec<&[Update]> = updates.chunks(batch).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut clients = (0..jobs)
        .map(|_| Client::connect(url, NoTls))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|client| {
                let (chunks, next) = (&chunks, &next);
                scope.spawn(move || -> anyhow::Result<()> {
                    let stmt = client.prepare(UPDATE)?;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else {
                            return Ok(());
                        };
                        let mut tx = client.transaction()?;
                        for u in chunk.iter() {
                            let n = tx.execute(&stmt, &[&u[0], &u[1], &u[2], &u[3], &u[4]])?;
                            anyhow::ensure!(n == 1, "floor UPDATE changed {n} rows");
                        }
                        tx.commit()?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("floor thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

fn count_on(url: &str, id: &str) -> anyhow::Result<i64> {
    let mut client = Client::connect(url, NoTls)?;
    Ok(client
        .query_one(
            "SELECT COUNT(*) FROM pf_encryption_keys WHERE master_key_id = $1",
            &[&id],
        )?
        .get(0))
}

fn main() -> ExitCode {
    let opts: Options = support::options();
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> anyhow::Result<()> {
    support::with_work_dir("keys", |bin, work| bench(opts, bin, work))
}

fn bench(opts: &Options, bin: &Path, work: &Path) -> anyhow::Result<()> {
    let n = opts.keys;
    let mut scratch = Scratch::new(&opts.server.url)?;
    let url = scratch.url.clone();
    pathfinder(bin, &url, &["init", "-q"])?;
    let new_key = |i: usize| -> anyhow::Result<(PathBuf, MasterKey)> {
        let path = work.join(format!("k{i}.key"));
        write_new_master_key(&path)?;
        let key = read_master_key_file(&path)?;
        Ok((path, key))
    };
    let (mut current_file, mut current) = new_key(0)?;
    eprintln!("loading {n} users and keys ...");
    let t = Instant::now();
    load(&url, &current, n)?;
    eprintln!("loaded in {:.1} s", t.elapsed().as_secs_f64());

    let mut lines = Vec::new();
    let batch = opts.batch_size.to_string();
    let mut serial = 0;
    for &jobs in &opts.jobs {
        // Best of `repeats` interleaved runs of each: the machine is shared, and
        // the best run is the one least disturbed by others.
        let mut best: Option<((Duration, Duration), (Duration, Duration))> = None;
        for repeat in 1..=opts.repeats {
            // pathfinder-db: current -> next.
            serial += 1;
            let (next_file, next) = new_key(serial)?;
            scratch.settle()?;
            eprintln!("jobs={jobs} run {repeat}: pathfinder-db keys rotate ...");
            let ours = pathfinder(
                bin,
                &url,
                &[
                    "--master-key-file",
                    current_file.to_str().unwrap(),
                    "-q",
                    "keys",
                    "rotate",
                    "--new-master-key-file",
                    next_file.to_str().unwrap(),
                    "--batch-size",
                    &batch,
                    "--jobs",
                    &jobs.to_string(),
                ],
            )?;
            let moved = count_on(&url, next.id().as_str())?;
            anyhow::ensure!(moved == n as i64, "pathfinder-db moved {moved} of {n} keys");

            // The floor: next -> after, values computed before the clock starts.
            serial += 1;
            let (after_file, after) = new_key(serial)?;
            let mut ring = Keyring::new();
            ring.add(read_master_key_file(&next_file)?);
            eprintln!("jobs={jobs} run {repeat}: precomputing the floor's values ...");
            let updates = precompute(&url, &ring, &after)?;
            scratch.settle()?;
            eprintln!("jobs={jobs} run {repeat}: the floor ...");
            let cpu_before = cpu(libc::RUSAGE_SELF);
            let wall = floor(&url, &updates, jobs, opts.batch_size)?;
            let base = (wall, cpu(libc::RUSAGE_SELF) - cpu_before);
            let moved = count_on(&url, after.id().as_str())?;
            anyhow::ensure!(moved == n as i64, "the floor moved {moved} of {n} keys");
            eprintln!(
                "jobs={jobs} run {repeat}: pathfinder-db {:.2} s, floor {:.2} s",
                ours.0.as_secs_f64(),
                base.0.as_secs_f64()
            );
            best = Some(match best {
                None => (ours, base),
                Some((o, b)) => (
                    if ours.0 < o.0 { ours } else { o },
                    if base.0 < b.0 { base } else { b },
                ),
            });
            current_file = after_file;
            current = after;
        }
        let ((ours, ours_cpu), (base, base_cpu)) = best.expect("at least one run");
        let ours_rate = n as f64 / ours.as_secs_f64();
        let floor_rate = n as f64 / base.as_secs_f64();
        let line = format!(
            "| {n} | {jobs} | {} | {:.2} s | {ours_rate:.0} | {:.2} s | {:.2} s | {floor_rate:.0} | {:.2} s | {:.2}x |",
            opts.batch_size,
            ours.as_secs_f64(),
            ours_cpu.as_secs_f64(),
            base.as_secs_f64(),
            base_cpu.as_secs_f64(),
            ours_rate / floor_rate
        );
        eprintln!("{line}");
        lines.push(line);
    }
    let _ = current;
    println!(
        "| keys | jobs | batch | pathfinder-db | keys/s | its CPU time | floor | keys/s | its CPU time | pathfinder-db / floor (throughput) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
