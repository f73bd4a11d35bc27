//! Benchmark of `pathfinder-db move` on PostgreSQL (run by hand, not a test).
//!
//! ```sh
//! cargo bench --bench move -- [--rows N] [--repeats R] [--server-url URL]
//! ```
//!
//! Defaults: 100,000 rows, best of 3, server `postgres://postgres@127.0.0.1:5432/postgres`
//! (or `PATHFINDER_BENCH_POSTGRES_URL`). See benches/README.md ("Moving a tenant").
//!
//! 1. Creates a catalog and two member databases (scratch), provisions tenant `bench`
//!    on m1 and fills it with N rows (N/100 conversations, the rest their messages).
//! 2. R times: times `pathfinder-db move bench --to <other member>` (process start to
//!    exit: create, copy, fingerprint both sides, switch, drop), and the floor: the same
//!    rows copied with plain SQL by one client (SELECT on the source, multi-row INSERTs
//!    of 500 rows with binds on the target, into a tenant provisioned there beforehand,
//!    one transaction). Prints the best of each and the ratio (target: <= 1.5).

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use postgres::{Client, NoTls};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("move bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Options after `cargo bench --bench move --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench move --",
    about = "move of one tenant against copying its rows with plain SQL"
)]
struct Options {
    /// Rows of the moved tenant
    #[arg(long, default_value_t = 100_000, value_parser = support::positive)]
    rows: usize,
    /// Runs of each (the best is reported)
    #[arg(long, default_value_t = 3, value_parser = support::positive)]
    repeats: usize,
    #[command(flatten)]
    server: support::Server,
}

fn run() -> anyhow::Result<()> {
    let Options {
        rows,
        repeats,
        server: support::Server { url: server },
    } = support::options();
    let bin = support::release_binary()?;
    let mut scratch = support::Scratch::new(&server, "move")?;
    let catalog = scratch.create("cat", None)?;
    let m1 = scratch.create("m1", None)?;
    let m2 = scratch.create("m2", None)?;
    let url = scratch.url(&catalog);
    let pf = |args: &[&str]| support::pathfinder_timed(&bin, &url, args);
    pf(&["init"])?;
    pf(&["databases", "add", "m1", &scratch.url(&m1)])?;
    pf(&["databases", "add", "m2", &scratch.url(&m2)])?;
    pf(&["provision", "bench", "--database", "m1"])?;
    // The floor copies into tenants of its own, made beforehand (untimed).
    pf(&["provision", "floor1", "--database", "m1"])?;
    pf(&["provision", "floor2", "--database", "m2"])?;
    let conversations = (rows / 100).max(1);
    let messages = rows - conversations;
    let mut c1 = Client::connect(&scratch.url(&m1), NoTls)?;
    c1.batch_execute(&format!(
        "INSERT INTO pf_user_bench_chat_conversations (id, title, model, total_messages) \
           SELECT 'c' || i, 'conversation ' || i, 'gpt-4', 99 FROM generate_series(1, {conversations}) AS i;
         INSERT INTO pf_user_bench_chat_messages (id, conversation_id, role, content, tokens_used, created_at) \
           SELECT 'm' || i, 'c' || (1 + i % {conversations}), 'user', \
                  'message ' || i || ' with some text of a typical length for a chat message', i, \
                  TIMESTAMP '2024-01-05 09:00:00' + i * INTERVAL '1 second' \
           FROM generate_series(1, {messages}) AS i;
         ANALYZE;"
    ))?;
    println!(
        "PostgreSQL {}, {rows} rows ({conversations} conversations, {messages} messages), best of {repeats}",
        scratch.server_version()
    );
    let mut best_move = Duration::MAX;
    let mut best_floor = Duration::MAX;
    let (mut here, mut there) = (("m1", m1.clone()), ("m2", m2.clone()));
    for _ in 0..repeats {
        scratch.checkpoint();
        let (took, out) = pf(&["move", "bench", "--to", there.0])?;
        anyhow::ensure!(out.contains(&format!("{rows} rows")), "move said: {out}");
        best_move = best_move.min(took);
        scratch.checkpoint();
        // The tenant is on `there` now: the floor copies it back to `here`.
        let floor = floor_copy(
            &scratch.url(&there.1),
            &scratch.url(&here.1),
            there.0,
            here.0,
        )?;
        best_floor = best_floor.min(floor);
        std::mem::swap(&mut here, &mut there);
    }
    println!(
        "move: {:.3} s   plain SQL copy: {:.3} s   ratio {:.2} (target <= 1.5)",
        best_move.as_secs_f64(),
        best_floor.as_secs_f64(),
        best_move.as_secs_f64() / best_floor.as_secs_f64()
    );
    Ok(())
}

/// Copies tenant bench's rows from `source` into the floor tenant of `target`
/// with plain SQL (emptied first, untimed); returns the time of the copy.
fn floor_copy(source: &str, target: &str, _from: &str, to: &str) -> anyhow::Result<Duration> {
    let dest = if to == "m1" { "floor1" } else { "floor2" };
    let mut src = Client::connect(source, NoTls)?;
    let mut dst = Client::connect(target, NoTls)?;
    dst.batch_execute(&format!(
        "TRUNCATE pf_user_{dest}_chat_messages, pf_user_{dest}_chat_conversations"
    ))?;
    let started = Instant::now();
    let mut tx = dst.transaction()?;
    for table in ["chat_conversations", "chat_messages"] {
        let object = format!("pf_user_bench_{table}");
        let columns: Vec<(String, String)> = src
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 ORDER BY ordinal_position",
                &[&object],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let select = format!(
            "SELECT {} FROM {object}",
            names
                .iter()
                .map(|c| format!("{c}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = src.query(&select, &[]).context("reading the source")?;
        for chunk in rows.chunks(500) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut binds: Vec<Option<String>> = Vec::with_capacity(chunk.len() * names.len());
            for row in chunk {
                let mut one = Vec::with_capacity(names.len());
                for (i, (_, ty)) in columns.iter().enumerate() {
                    binds.push(row.get::<_, Option<String>>(i));
                    one.push(format!("${}::text::{ty}", binds.len()));
                }
                values.push(format!("({})", one.join(", ")));
            }
            let sql = format!(
                "INSERT INTO pf_user_{dest}_{table} ({}) VALUES {}",
                names.join(", "),
                values.join(", ")
            );
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = binds
                .iter()
                .map(|b| b as &(dyn postgres::types::ToSql + Sync))
                .collect();
            tx.execute(&sql, &params)?;
        }
    }
    tx.commit()?;
    Ok(started.elapsed())
}
