use crate::schema::render::Scope;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many failed tenants to list
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub failed_limit: usize,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database_read_only()?;
    let latest = renderer.latest_version(Scope::Tenant);
    let mut session = db.connect_read_only()?;
    let member = ctx.member_filter(session.system())?;
    let status = crate::catalog::registry::fleet_status(
        session.system(),
        latest as i64,
        args.failed_limit,
        member.as_deref(),
    )?;
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&status)?);
        return Ok(0);
    }
    ctx.say(format!(
        "{} tenant(s); latest tenant version {latest}; {} pending migration",
        status.tenants, status.pending
    ));
    for row in &status.by_version {
        ctx.say(format!(
            "  version {:>3}  {:<14} {:>8}",
            row.version, row.status, row.count
        ));
    }
    for f in &status.failed {
        ctx.say(format!(
            "  failed: {} (version {}): {}",
            f.username,
            f.version,
            f.error.as_deref().unwrap_or("")
        ));
    }
    Ok(0)
}
