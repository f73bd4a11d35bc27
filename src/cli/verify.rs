use crate::catalog::registry::Status;

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
    let (db, renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let tenants = select_tenants(ctx, session.system(), &wanted, args.all, |t| {
        !matches!(t.status, Status::Deprovisioning | Status::Deprovisioned)
    })?;
    // A tenant being imported is not in service, whatever its tables hold.
    let (importing, tenants): (Vec<_>, Vec<_>) = tenants
        .into_iter()
        .partition(|t| t.status == Status::Importing);
    let (mut drift, failed) = crate::migrate::verify::verify(
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
    let verified = tenants.len() + importing.len() - failed.len();
    let grants = grants(ctx, &mut session, &renderer, &tenants, args.all)?;
    for f in &failed {
        eprintln!("error: {}: {}", f.username, f.error);
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "verified": verified,
            "drifted": drift,
            "grants": grants,
            "failed": failed,
        }));
    } else {
        for problem in &grants.problems {
            super::out(&format!("grants: {problem}\n"));
        }
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
    if !drift.is_empty() || !grants.problems.is_empty() {
        return Ok(crate::error::EXIT_ERROR);
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|f| f.username.clone()).collect();
        return Err(crate::error::PartialFailure::new(verified + failed.len(), &names).into());
    }
    Ok(0)
}

/// What `verify` says about the application role's grants.
#[derive(serde::Serialize)]
struct Grants {
    role: Option<String>,
    role_exists: bool,
    problems: Vec<String>,
}

/// The application role's grants on the verified tenants' objects and the
/// shared ones, and the row-level security policies (`grants check` for
/// them); SQLite: the files' modes. A role that does not exist yet is a
/// note, not drift: the application still connects as before.
fn grants(
    ctx: &Context,
    session: &mut crate::db::Session<'_>,
    renderer: &crate::schema::render::Renderer,
    tenants: &[crate::catalog::registry::TenantRecord],
    all: bool,
) -> anyhow::Result<Grants> {
    if let Some((_, open)) = crate::security::grants::files::check_deployment(session)? {
        return Ok(Grants {
            role: None,
            role_exists: false,
            problems: open.iter().map(|f| f.describe()).collect(),
        });
    }
    let role = ctx.config.app_role.clone();
    let keys = tenants
        .iter()
        .map(|t| crate::schema::tenant::TenantKey::parse(&t.tenant_key, session.dialect()))
        .collect::<Result<Vec<_>, _>>()?;
    let only = (!all).then_some(keys.as_slice());
    let Some(report) = crate::security::grants::check(session.system(), renderer, &role, only)?
    else {
        return Ok(Grants {
            role: None,
            role_exists: false,
            problems: Vec::new(),
        });
    };
    if !report.role_exists {
        ctx.note(format!(
            "note: role {role} does not exist: the application's grants are not verified (`pathfinder-db grants apply --create-role` creates it)"
        ));
    }
    Ok(Grants {
        role: Some(role),
        role_exists: report.role_exists,
        problems: report
            .problems
            .iter()
            .filter(|p| !matches!(p, crate::security::grants::Problem::RoleMissing { .. }))
            .map(|p| p.describe(&report.role))
            .collect(),
    })
}
