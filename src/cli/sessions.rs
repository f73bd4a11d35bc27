use clap::Subcommand;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Delete expired pf_user_sessions rows (never archived: they hold refresh tokens)
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Count the expired sessions, delete nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Rows per batch; each batch is one transaction
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let Sub::Purge(args) = args.command;
    let (db, _) = ctx.open_for(args.dry_run)?;
    let mut session = db.connect_as(args.dry_run)?;
    let purge = crate::jobs::sessions::purge(&mut session, args.batch_size, args.dry_run)?;
    if ctx.json {
        let mut doc = serde_json::to_value(&purge)?;
        doc["failed"] = serde_json::json!([]);
        ctx.print_json(&doc);
    } else if args.dry_run {
        ctx.say(format!(
            "{} session(s) expired before {}: dry run, nothing deleted",
            purge.deleted, purge.expired_before
        ));
    } else {
        ctx.say(format!(
            "deleted {} session(s) that expired before {} ({} batch(es))",
            purge.deleted, purge.expired_before, purge.batches
        ));
    }
    Ok(0)
}
