use std::time::Instant;

use crate::error::PartialFailure;
use crate::registry::Status;

use super::{Context, parse_usernames, progress_bar, select_tenants};

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
    let tenants = select_tenants(db.connect()?.system(), &wanted, args.all, |t| {
        t.status == Status::Active
    })?;
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let started = Instant::now();
    let bar = progress_bar(ctx, tenants.len(), "analyzing");
    let results = crate::parallel::for_each(
        &db,
        &tenants,
        jobs,
        false,
        crate::jobs::analyze::analyze,
        |_, _| bar.inc(1),
    );
    bar.finish_and_clear();
    let mut analyzed = Vec::new();
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    let mut tables = 0;
    for (tenant, result) in tenants.iter().zip(results) {
        match result {
            Some(Ok(n)) => {
                tables += n;
                analyzed.push(serde_json::json!({
                    "username": tenant.username,
                    "tenant_key": tenant.tenant_key,
                    "tables": n,
                }));
            }
            Some(Err(err)) => {
                let message = crate::error::one_line(&err);
                eprintln!("error: {}: {message}", tenant.username);
                failed.push(tenant.username.clone());
                errors.push(serde_json::json!({"username": tenant.username, "error": message}));
            }
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "analyzed": analyzed.len(),
            "tables": tables,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "tenants": analyzed,
            "failed": errors,
        }));
    } else {
        ctx.say(format!(
            "gathered statistics for {} tenant(s), {tables} tables, in {seconds:.1} s; {} failed",
            analyzed.len(),
            failed.len()
        ));
    }
    if failed.is_empty() {
        Ok(0)
    } else if !analyzed.is_empty() {
        Err(PartialFailure::new(tenants.len(), &failed).into())
    } else {
        Err(anyhow::anyhow!("analyze failed for every tenant"))
    }
}
