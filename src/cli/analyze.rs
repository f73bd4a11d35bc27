use std::time::Instant;

use crate::catalog::registry::Status;

use super::{Context, parse_usernames, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users whose tables to analyze
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every active tenant
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let (db, _renderer) = ctx.open_database_existing()?;
    let tenants = select_tenants(ctx, db.connect()?.system(), &wanted, args.all, |t| {
        t.status == Status::Active
    })?;
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let started = Instant::now();
    let run = super::for_tenants(
        ctx,
        &db,
        &tenants,
        jobs,
        "analyzing",
        false,
        crate::jobs::analyze::analyze,
    );
    let tables: usize = run.done.iter().map(|(_, n)| n).sum();
    let analyzed: Vec<serde_json::Value> = run
        .done
        .iter()
        .map(|(tenant, n)| {
            serde_json::json!({
                "username": tenant.username,
                "tenant_key": tenant.tenant_key,
                "tables": n,
            })
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "analyzed": analyzed.len(),
            "tables": tables,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "tenants": analyzed,
            "failed": run.failed,
            "skipped": run.skipped,
        }));
    } else {
        ctx.say(format!(
            "gathered statistics for {} tenant(s), {tables} tables, in {seconds:.1} s; {} failed",
            analyzed.len(),
            run.failed.len()
        ));
    }
    run.exit("analyze")
}
