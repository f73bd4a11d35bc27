use crate::error::UsageError;
use crate::schema::render::script;
use crate::schema::tenant::{TenantKey, Username};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user whose tenant DDL to print
    #[arg(required_unless_present = "system")]
    pub user: Option<String>,

    /// The tenant key naming the user's tables (for names too long for the dialect)
    #[arg(long, value_name = "KEY")]
    pub tenant_key: Option<String>,

    /// Print the shared system schema instead of a tenant's
    #[arg(long, conflicts_with_all = ["user", "tenant_key"])]
    pub system: bool,

    /// Only up to this version (default: the latest)
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u32>,

    /// SQL dialect (env PATHFINDER_DIALECT, config `dialect`) [default: the database URL's]
    #[arg(long, value_enum)]
    pub dialect: Option<crate::db::dialect::Dialect>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let dialect = ctx.config.render_dialect()?;
    // Validate names before loading anything, so bad input prints no SQL.
    let key = match &args.user {
        Some(user) => {
            let user = Username::parse(user).map_err(|e| e.usage(Some(dialect)))?;
            Some(match &args.tenant_key {
                Some(k) => TenantKey::parse(k, dialect)?,
                None => TenantKey::for_username(&user, dialect)?,
            })
        }
        None => None,
    };
    let renderer = ctx.renderer(dialect)?;
    let migrations = match &key {
        Some(key) => renderer.tenant_migrations(key)?,
        None => renderer.system_migrations()?,
    };
    if let Some(to) = args.to
        && !migrations.iter().any(|m| m.version == to)
    {
        return Err(UsageError::new(format!("there is no version {to}")).into());
    }
    let wanted: Vec<_> = migrations
        .iter()
        .filter(|m| args.to.is_none_or(|to| m.version <= to))
        .collect();
    if ctx.json {
        let value = serde_json::json!({
            "dialect": dialect.name(),
            "tenant_key": key.as_ref().map(|k| k.to_string()),
            "migrations": wanted.iter().map(|m| serde_json::json!({
                "version": m.version,
                "name": m.name,
                "statements": m.statements.iter().map(|s| s.sql.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        ctx.print_json(&value);
        return Ok(0);
    }
    let what = match &key {
        Some(k) => format!("tenant {k}"),
        None => "system schema".to_string(),
    };
    let mut out = format!("-- {}: {what}, {dialect}\n\n", crate::USER_AGENT);
    for m in wanted {
        out.push_str(&format!("-- {}\n", m.name));
        out.push_str(&script(&m.statements, dialect));
    }
    super::out(&out);
    Ok(0)
}
