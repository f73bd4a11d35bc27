use crate::catalog::registry::Status;

use super::{Context, parse_usernames, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users whose career summary to refresh
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Refresh every active tenant
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let (db, renderer) = ctx.open_database_existing()?;
    let tenants = select_tenants(ctx, db.connect()?.system(), &wanted, args.all, |t| {
        t.status == Status::Active
    })?;
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let run = super::for_tenants(
        ctx,
        &db,
        &tenants,
        jobs,
        "refreshing",
        false,
        |session, tenant| crate::jobs::refresh::refresh(session, &renderer, tenant),
    );
    let refreshed = run.done.len();
    if ctx.json {
        ctx.print_json(&serde_json::json!({"refreshed": refreshed, "failed": run.failed, "skipped": run.skipped}));
    } else {
        ctx.say(format!(
            "refreshed the career summary of {refreshed} tenant(s)"
        ));
    }
    run.exit("refresh")
}
