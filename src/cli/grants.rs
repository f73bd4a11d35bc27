use clap::Subcommand;

use crate::security::grants::{self, Applied, Report, files};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Make the application role's grants and the row-level security policies match what the
    /// application needs, for the system tables and every tenant (SQLite: make the files private)
    Apply(ApplyArgs),
    /// Report drift: missing grants, extra privileges, disabled or missing policies, ownership or
    /// DDL rights of the application role (SQLite: files others may read); exit 1 on drift
    Check,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Print the statements, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Create the role (app_role) when it does not exist (PostgreSQL: NOLOGIN; see the README
    /// for the application's login)
    #[arg(long)]
    pub create_role: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        Sub::Apply(a) => apply(ctx, a),
        Sub::Check => check(ctx),
    }
}

/// SQLite has no roles: said on stderr, once, before the files are looked at.
const SQLITE_NOTE: &str = "SQLite has no roles: grants and row-level security apply to PostgreSQL and Oracle only; what SQLite can enforce is that its files are readable by their owner only";

/// On a fleet this command reads and changes the catalog only: said on
/// stderr, so a clean report is not taken for the members'.
fn fleet_note(session: &mut crate::db::Session<'_>) -> anyhow::Result<()> {
    if session.has_members()? {
        eprintln!(
            "note: only the catalog is checked: the grants on member databases are made when a tenant is provisioned, migrated or moved there, and not yet checked or repaired by this command"
        );
    }
    Ok(())
}

fn check(ctx: &Context) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database_read_only()?;
    if let Some((main, tenant_dir)) = db.sqlite_paths() {
        return sqlite_files(ctx, main, tenant_dir, false);
    }
    let role = ctx.config.app_role.as_str();
    let mut session = db.connect_read_only()?;
    fleet_note(&mut session)?;
    let report = grants::check(session.system(), &renderer, role, None)?
        .ok_or_else(|| anyhow::anyhow!("{} has no roles", db.dialect()))?;
    print_report(ctx, &report);
    Ok(if report.ok() {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}

/// How many problems the human output lists (`--json` has them all).
const LISTED: usize = 50;

fn print_report(ctx: &Context, report: &Report) {
    if ctx.json {
        let problems: Vec<serde_json::Value> = report
            .problems
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["message"] = serde_json::Value::String(p.describe(&report.role));
                v
            })
            .collect();
        ctx.print_json(&serde_json::json!({
            "role": report.role,
            "role_exists": report.role_exists,
            "objects": report.objects,
            "ok": report.ok(),
            "problems": problems,
        }));
        return;
    }
    // Drift is printed even with --quiet (cron mails it); a clean result is not.
    if report.ok() {
        ctx.say(format!(
            "role {}: grants on {} object(s) and row-level security match",
            report.role, report.objects
        ));
        return;
    }
    for p in report.problems.iter().take(LISTED) {
        super::out(&format!("{}\n", p.describe(&report.role)));
    }
    if report.problems.len() > LISTED {
        super::out(&format!(
            "... and {} more (--json lists them all)\n",
            report.problems.len() - LISTED
        ));
    }
    super::out(&if !report.role_exists {
        format!(
            "role {}: {} problem(s); `pathfinder-db grants apply --create-role` creates the role and grants it what the application needs\n",
            report.role,
            report.problems.len()
        )
    } else {
        format!(
            "role {}: {} problem(s) in {} object(s); `pathfinder-db grants apply` repairs what it can\n",
            report.role,
            report.problems.len(),
            report.objects
        )
    });
}

fn apply(ctx: &Context, args: ApplyArgs) -> anyhow::Result<u8> {
    let (db, renderer) = if args.dry_run {
        ctx.open_database_read_only()?
    } else {
        ctx.open_database_existing()?
    };
    if let Some((main, tenant_dir)) = db.sqlite_paths() {
        return sqlite_files(ctx, main, tenant_dir, !args.dry_run);
    }
    let role = ctx.config.app_role.as_str();
    let mut session = if args.dry_run {
        db.connect_read_only()?
    } else {
        db.connect()?
    };
    fleet_note(&mut session)?;
    let applied = grants::apply(
        session.system(),
        &renderer,
        role,
        args.create_role,
        args.dry_run,
    )?
    .ok_or_else(|| anyhow::anyhow!("{} has no roles", db.dialect()))?;
    print_applied(ctx, &applied, args.dry_run, db.dialect());
    Ok(if applied.unfixable.is_empty() {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}

fn print_applied(
    ctx: &Context,
    applied: &Applied,
    dry_run: bool,
    dialect: crate::db::dialect::Dialect,
) {
    if ctx.json {
        let unfixable: Vec<serde_json::Value> = applied
            .unfixable
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["message"] = serde_json::Value::String(p.describe(&applied.role));
                v
            })
            .collect();
        ctx.print_json(&serde_json::json!({
            "dry_run": dry_run,
            "role": applied.role,
            "created_role": applied.created_role,
            "changes": applied.changes,
            "not_repaired": unfixable,
        }));
    } else if dry_run {
        // The statements, as a script a DBA could run.
        for change in &applied.changes {
            super::out(&crate::schema::render::script(&change.statements, dialect));
        }
        ctx.say(format!(
            "dry run: {} change(s) for role {}, nothing changed",
            applied.changes.len(),
            applied.role
        ));
    } else {
        for change in &applied.changes {
            let what = if change.privileges.is_empty() {
                change.action.clone()
            } else {
                let (verb, rest) = change
                    .action
                    .split_once(' ')
                    .unwrap_or((&change.action, ""));
                format!("{verb} {} {rest}", change.privileges.join(", "))
            };
            let objects = match change.objects.as_slice() {
                [one] => one.clone(),
                many => format!("{} objects", many.len()),
            };
            ctx.say(format!("{what}: {objects}"));
        }
        ctx.say(format!(
            "{} change(s) made for role {}{}",
            applied.changes.len(),
            applied.role,
            if applied.unfixable.is_empty() {
                "; grants and policies match"
            } else {
                ""
            }
        ));
    }
    for p in &applied.unfixable {
        eprintln!(
            "not repaired: {} (a DBA decides: pathfinder-db does not change other roles, role attributes or ownership)",
            p.describe(&applied.role)
        );
    }
}

/// SQLite: the note, then the files others may use (repaired with `repair`).
fn sqlite_files(
    ctx: &Context,
    main: &std::path::Path,
    tenant_dir: &std::path::Path,
    repair: bool,
) -> anyhow::Result<u8> {
    if !ctx.quiet && !ctx.json {
        eprintln!("note: {SQLITE_NOTE}");
    }
    let (checked, open) = files::check(main, tenant_dir)?;
    if repair {
        files::repair(&open)?;
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "dialect": "sqlite",
            "roles": false,
            "files": checked,
            "ok": open.is_empty() || repair,
            "open_files": open,
            "repaired": repair,
        }));
    } else {
        for f in &open {
            let line = f.describe();
            super::out(&if repair {
                format!("made private: {line}\n")
            } else {
                format!("{line}\n")
            });
        }
        let line = format!(
            "{checked} SQLite file(s) and folder(s) checked, {}",
            match (open.len(), repair) {
                (0, _) => "all readable by their owner only".to_string(),
                (n, true) => format!("{n} made readable by their owner only"),
                (n, false) => format!(
                    "{n} open to others: `pathfinder-db grants apply` makes them 0600 (folders 0700)"
                ),
            }
        );
        // Files open to others are printed even with --quiet (cron mails them).
        if open.is_empty() || repair {
            ctx.say(line);
        } else {
            super::out(&format!("{line}\n"));
        }
    }
    Ok(if open.is_empty() || repair {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}
