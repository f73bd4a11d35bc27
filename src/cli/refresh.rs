use crate::error::PartialFailure;
use crate::registry::Status;

use super::{Context, parse_usernames, progress_bar, select_tenants};

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
    let tenants = select_tenants(db.connect()?.system(), &wanted, args.all, |t| {
        t.status == Status::Active
    })?;
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let bar = progress_bar(ctx, tenants.len(), "refreshing");
    let results = crate::parallel::for_each(
        &db,
        &tenants,
        jobs,
        false,
        |session, tenant| crate::jobs::refresh::refresh(session, &renderer, tenant),
        |_, _| bar.inc(1),
    );
    bar.finish_and_clear();
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    for (tenant, result) in tenants.iter().zip(results) {
        if let Some(Err(err)) = result {
            let message = crate::error::one_line(&err);
            eprintln!("error: {}: {message}", tenant.username);
            failed.push(tenant.username.clone());
            errors.push(serde_json::json!({"username": tenant.username, "error": message}));
        }
    }
    let refreshed = tenants.len() - failed.len();
    if ctx.json {
        ctx.print_json(&serde_json::json!({"refreshed": refreshed, "failed": errors}));
    } else {
        ctx.say(format!(
            "refreshed the career summary of {refreshed} tenant(s)"
        ));
    }
    if failed.is_empty() {
        Ok(0)
    } else if refreshed > 0 {
        Err(PartialFailure::new(tenants.len(), &failed).into())
    } else {
        Err(anyhow::anyhow!("refresh failed for every tenant"))
    }
}
