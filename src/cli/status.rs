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
        // A run stopped half-way (killed) left no error: its state says it.
        let error = match f.error.as_deref() {
            Some(e) if !e.is_empty() => e.to_string(),
            _ => format!(
                "{}, stopped half-way: `pathfinder-db doctor` names the way forward",
                f.status
            ),
        };
        ctx.say(format!(
            "  failed: {} (version {}): {error}",
            f.username, f.version,
        ));
    }
    Ok(0)
}
