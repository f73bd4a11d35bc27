use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include deprovisioned tenants
    #[arg(long)]
    pub all: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (db, _renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let tenants = crate::registry::list(session.system(), args.all)?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "tenants": tenants }));
        return Ok(0);
    }
    if tenants.is_empty() {
        ctx.say("no tenants: `pathfinder-db provision <user>` creates one");
        return Ok(0);
    }
    let width = tenants
        .iter()
        .map(|t| t.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    ctx.say(format!(
        "{:width$}  {:<width$}  {:>7}  {:<14}  CREATED",
        "USERNAME", "KEY", "VERSION", "STATUS"
    ));
    for t in &tenants {
        ctx.say(format!(
            "{:width$}  {:<width$}  {:>7}  {:<14}  {}",
            t.username,
            t.tenant_key,
            t.schema_version,
            t.status.as_str(),
            t.created_at
        ));
    }
    Ok(0)
}
