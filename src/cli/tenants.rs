use crate::catalog::registry::TenantRecord;
use crate::schema::render::Scope;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include deprovisioned tenants
    #[arg(long)]
    pub all: bool,

    /// Only the tenants `migrate --all` would take: behind the latest tenant
    /// version, failed, or interrupted (exit code 0 either way)
    #[arg(long, conflicts_with = "all")]
    pub pending: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let member = ctx.member_filter(session.system())?;
    let on_member = |t: &TenantRecord| member.as_deref().is_none_or(|m| t.database == m);
    if args.pending {
        let target = renderer.latest_version(Scope::Tenant);
        let mut tenants = crate::catalog::registry::pending_records(session.system(), target)?;
        tenants.retain(on_member);
        if ctx.json {
            ctx.print_json(&serde_json::json!({ "target": target, "tenants": tenants }));
        } else if tenants.is_empty() {
            ctx.say(format!(
                "no tenant pending: every tenant is at version {target}"
            ));
        } else {
            ctx.say(format!(
                "{} tenant(s) pending migration to version {target}:",
                tenants.len()
            ));
            print_table(ctx, &tenants);
        }
        // A listing: "some are pending" is an answer, not a failure.
        return Ok(0);
    }
    let mut tenants = crate::catalog::registry::list(session.system(), args.all)?;
    tenants.retain(on_member);
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "tenants": tenants }));
        return Ok(0);
    }
    if tenants.is_empty() {
        ctx.say("no tenants: `pathfinder-db provision <user>` creates one");
        return Ok(0);
    }
    print_table(ctx, &tenants);
    Ok(0)
}

fn print_table(ctx: &Context, tenants: &[TenantRecord]) {
    let width = tenants
        .iter()
        .map(|t| t.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    // The member column only on a fleet (a deployment without members has
    // every tenant on the catalog).
    let fleet = tenants
        .iter()
        .any(|t| t.database != crate::fleet::members::CATALOG);
    let member = |name: &str| {
        if fleet {
            format!("  {name:<16}")
        } else {
            String::new()
        }
    };
    ctx.say(format!(
        "{:width$}  {:<width$}  {:>7}  {:<14}{}  CREATED",
        "USERNAME",
        "KEY",
        "VERSION",
        "STATUS",
        member("DATABASE")
    ));
    for t in tenants {
        ctx.say(format!(
            "{:width$}  {:<width$}  {:>7}  {:<14}{}  {}",
            t.username,
            t.tenant_key,
            t.schema_version,
            t.status.as_str(),
            member(&t.database),
            t.created_at
        ));
    }
}
