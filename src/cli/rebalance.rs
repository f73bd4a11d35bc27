use std::path::PathBuf;
use std::time::Duration;

use crate::fleet::rebalance::{self, DEFAULT_SPREAD, Options};
use crate::jobs::retention::Stop;

use super::Context;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Members with a capacity are balanced by fill (live tenants / capacity); draining \
                  members are emptied. Each move is a verified `move`; moves an earlier run left \
                  half-way (tenants `moving`) are finished first; a tenant whose tables differ \
                  from its version is skipped (`pathfinder-db verify USER`). Exit 0 when \
                  balanced, 3 when a move failed or was skipped or the run stopped first (run it \
                  again to go on)."
)]
pub struct Args {
    /// Print the moves, make none
    #[arg(long)]
    pub dry_run: bool,

    /// Make at most this many moves
    #[arg(long, value_name = "N")]
    pub max_moves: Option<usize>,

    /// Stop cleanly between moves after this long (90s, 30m, 2h, 1h30m)
    #[arg(long, value_name = "DURATION", value_parser = super::retention::parse_duration)]
    pub max_runtime: Option<Duration>,

    /// Stop cleanly between moves once this file exists
    #[arg(long, value_name = "FILE")]
    pub stop_file: Option<PathBuf>,

    /// How far apart members' fills may be, in percentage points
    #[arg(long, value_name = "PCT", default_value_t = DEFAULT_SPREAD * 100.0)]
    pub spread: f64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if !(0.0..=100.0).contains(&args.spread) {
        return Err(crate::error::UsageError::new("--spread is a percentage: 0 to 100").into());
    }
    let (db, renderer) = ctx.open_for(args.dry_run)?;
    let mut session = db.connect_as(args.dry_run)?;
    let stop = Stop::new(args.max_runtime, args.stop_file.clone());
    let options = Options {
        dry_run: args.dry_run,
        max_moves: args.max_moves,
        spread: args.spread / 100.0,
        templates_dir: ctx.config.templates_dir.clone(),
    };
    let verb = if args.dry_run { "would move" } else { "moved" };
    let finish = if args.dry_run {
        "would finish"
    } else {
        "finished"
    };
    let report = rebalance::run(&mut session, &renderer, &options, &stop, |step| {
        let done = step
            .rows
            .map(|r| format!("{r} rows in {:.2} s", step.seconds.unwrap_or(0.0)));
        if step.resumed {
            ctx.say(format!(
                "{finish} the interrupted move of {} from {} to {}{}",
                step.username,
                step.from,
                step.to,
                done.map(|d| format!(" ({d})")).unwrap_or_default()
            ));
            return;
        }
        ctx.say(format!(
            "{verb} {} from {} to {} ({} bytes{})",
            step.username,
            step.from,
            step.to,
            step.bytes,
            done.map(|d| format!(", {d}")).unwrap_or_default()
        ));
    })?;
    for f in &report.failed {
        eprintln!(
            "error: moving {} from {} to {}: {}",
            f.username, f.from, f.to, f.error
        );
    }
    for s in &report.skipped {
        eprintln!(
            "skipped {0}: drift on {2} ({1}): `pathfinder-db verify {0}` lists it; repair it, then rebalance again",
            s.username, s.drift, s.from
        );
    }
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&report)?);
    } else if report.balanced && report.failed.is_empty() && report.skipped.is_empty() {
        ctx.say(format!(
            "balanced: {} move(s){}",
            report.moves.len(),
            if args.dry_run { " planned" } else { "" }
        ));
    } else {
        ctx.say(format!(
            "not balanced yet: {} move(s), stopped ({}){}",
            report.moves.len(),
            report.stopped.as_deref().unwrap_or(if report.failed.is_empty() {
                "drift"
            } else {
                "failures"
            }),
            if report.stopped.as_deref() == Some("no_room") {
                ": no open member with a capacity has room; add one, or raise a capacity (`pathfinder-db databases set-capacity NAME N`)"
            } else if report.stopped.is_none() && report.failed.is_empty() {
                ": repair the skipped tenants' drift, then run it again"
            } else {
                ": run it again to go on"
            }
        ));
    }
    Ok(
        if report.balanced && report.failed.is_empty() && report.skipped.is_empty() {
            0
        } else {
            3
        },
    )
}
