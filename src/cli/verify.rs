use crate::registry::Status;

use super::{Context, parse_usernames, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to verify
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Verify every tenant
    #[arg(long)]
    pub all: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let (db, _renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let tenants = select_tenants(session.system(), &wanted, args.all, |t| {
        !matches!(t.status, Status::Deprovisioning | Status::Deprovisioned)
    })?;
    // A tenant being imported is not in service, whatever its tables hold.
    let (importing, tenants): (Vec<_>, Vec<_>) = tenants
        .into_iter()
        .partition(|t| t.status == Status::Importing);
    let mut drift = crate::migrate::verify::verify(
        &mut session,
        ctx.config.templates_dir.as_deref(),
        &tenants,
    )?;
    drift.extend(importing.iter().map(|t| crate::migrate::verify::Drift {
        username: t.username.clone(),
        version: t.schema_version,
        problems: vec![format!(
            "being imported, not active: run the same import again to finish it, or `pathfinder-db import --cancel --as {}` to remove it",
            t.username
        )],
    }));
    let verified = tenants.len() + importing.len();
    if ctx.json {
        ctx.print_json(&serde_json::json!({"verified": verified, "drifted": drift}));
    } else {
        for d in &drift {
            for problem in &d.problems {
                super::out(&format!(
                    "{} (version {}): {problem}\n",
                    d.username, d.version
                ));
            }
        }
        ctx.say(format!(
            "{} tenant(s) verified, {} with drift",
            verified,
            drift.len()
        ));
    }
    Ok(if drift.is_empty() {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}
