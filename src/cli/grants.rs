use clap::Subcommand;

use crate::fleet::members::CATALOG;
use crate::security::grants::{self, Applied, Failed, Problem, Report, files};

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

fn check(ctx: &Context) -> anyhow::Result<u8> {
    let (db, _) = ctx.open_database_read_only()?;
    if db.sqlite_paths().is_some() {
        return sqlite_files(ctx, &db, false);
    }
    let role = ctx.config.app_role.as_str();
    let mut session = db.connect_read_only()?;
    let (reports, failed) = grants::check_fleet(&mut session, role)?
        .ok_or_else(|| anyhow::anyhow!("{} has no roles", db.dialect()))?;
    print_reports(ctx, role, &reports, &failed);
    print_failed(&failed, "not checked");
    Ok(if reports.iter().any(|r| !r.ok()) {
        crate::error::EXIT_ERROR
    } else if !failed.is_empty() {
        crate::error::EXIT_PARTIAL
    } else {
        0
    })
}

/// How many problems the human output lists (`--json` has them all).
const LISTED: usize = 50;

/// A problem in one line, naming the member it is on (the catalog's as
/// before members existed). Roles are per server: a member on another
/// server needs the role too.
fn describe(p: &Problem, role: &str, database: &str) -> String {
    match (p, database) {
        (_, CATALOG) => p.describe(role),
        (Problem::RoleMissing { .. }, member) => format!(
            "member {member}: role {role} does not exist on this member's server (roles are per server): nothing there is granted to the application; `pathfinder-db grants apply --create-role` creates it there"
        ),
        (_, member) => format!("member {member}: {}", p.describe(role)),
    }
}

/// The members that failed, as `{"database", "error"}` objects.
fn failed_json(failed: &[Failed]) -> serde_json::Value {
    serde_json::to_value(failed).unwrap_or_default()
}

/// The members that could not be reached (or read, or changed), on stderr
/// with the way forward.
fn print_failed(failed: &[Failed], what: &str) {
    for f in failed {
        eprintln!(
            "{what}: {}; check that it is up (`pathfinder-db databases list`) and run the same command again",
            f.error
        );
    }
}

fn print_reports(ctx: &Context, role: &str, reports: &[Report], failed: &[Failed]) {
    let objects: usize = reports.iter().map(|r| r.objects).sum();
    let ok = reports.iter().all(Report::ok);
    let role_exists = reports.iter().all(|r| r.role_exists);
    let problems = reports
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| (r, p)));
    if ctx.json {
        let problems: Vec<serde_json::Value> = problems
            .map(|(r, p)| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["database"] = serde_json::Value::String(r.database.clone());
                v["message"] = serde_json::Value::String(describe(p, role, &r.database));
                v
            })
            .collect();
        let databases: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "database": r.database,
                    "role_exists": r.role_exists,
                    "objects": r.objects,
                    "ok": r.ok(),
                    "problems": r.problems.len(),
                })
            })
            .collect();
        ctx.print_json(&serde_json::json!({
            "role": role,
            "role_exists": role_exists,
            "objects": objects,
            "ok": ok && failed.is_empty(),
            "problems": problems,
            "databases": databases,
            "failed": failed_json(failed),
        }));
        return;
    }
    let count = reports.iter().map(|r| r.problems.len()).sum::<usize>();
    // The members checked: one that could not be read is said apart.
    let over = if reports.len() > 1 || !failed.is_empty() {
        let unread = match failed.len() {
            0 => String::new(),
            n => format!(" ({n} more could not be checked)"),
        };
        format!(
            " on the catalog and {} member(s){unread}",
            reports.len() - 1
        )
    } else {
        String::new()
    };
    // Drift is printed even with --quiet (cron mails it); a clean result is not.
    if ok {
        ctx.say(format!(
            "role {role}: grants on {objects} object(s) and row-level security match{}",
            if failed.is_empty() {
                over
            } else {
                format!("{over}, {} member(s) not checked", failed.len())
            }
        ));
        return;
    }
    for (r, p) in problems.take(LISTED) {
        super::out(&format!("{}\n", describe(p, role, &r.database)));
    }
    if count > LISTED {
        super::out(&format!(
            "... and {} more (--json lists them all)\n",
            count - LISTED
        ));
    }
    super::out(&if !role_exists {
        format!(
            "role {role}: {count} problem(s){over}; `pathfinder-db grants apply --create-role` creates the role where it is missing and grants it what the application needs\n"
        )
    } else {
        format!(
            "role {role}: {count} problem(s) in {objects} object(s){over}; `pathfinder-db grants apply` repairs what it can\n"
        )
    });
}

fn apply(ctx: &Context, args: ApplyArgs) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_for(args.dry_run)?;
    if db.sqlite_paths().is_some() {
        return sqlite_files(ctx, &db, !args.dry_run);
    }
    let role = ctx.config.app_role.as_str();
    let mut session = db.connect_as(args.dry_run)?;
    let (applied, failed) = grants::apply(
        &mut session,
        &renderer,
        role,
        args.create_role,
        args.dry_run,
    )?
    .ok_or_else(|| anyhow::anyhow!("{} has no roles", db.dialect()))?;
    print_applied(ctx, &applied, &failed, args.dry_run, db.dialect());
    print_failed(&failed, "not repaired");
    Ok(if !failed.is_empty() {
        crate::error::EXIT_PARTIAL
    } else if applied.iter().all(|a| a.unfixable.is_empty()) {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}

fn print_applied(
    ctx: &Context,
    applied: &[Applied],
    failed: &[Failed],
    dry_run: bool,
    dialect: crate::db::dialect::Dialect,
) {
    let role = applied.first().map(|a| a.role.as_str()).unwrap_or_default();
    let fleet = applied.len() > 1 || !failed.is_empty();
    let changes = applied.iter().map(|a| a.changes.len()).sum::<usize>();
    let unfixable = applied
        .iter()
        .flat_map(|a| a.unfixable.iter().map(move |p| (a, p)));
    if ctx.json {
        let with_database = |a: &Applied, v: &mut serde_json::Value| {
            v["database"] = serde_json::Value::String(a.database.clone());
        };
        let all_changes: Vec<serde_json::Value> = applied
            .iter()
            .flat_map(|a| {
                a.changes.iter().map(move |c| {
                    let mut v = serde_json::to_value(c).unwrap_or_default();
                    with_database(a, &mut v);
                    v
                })
            })
            .collect();
        let not_repaired: Vec<serde_json::Value> = unfixable
            .clone()
            .map(|(a, p)| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                with_database(a, &mut v);
                v["message"] = serde_json::Value::String(describe(p, role, &a.database));
                v
            })
            .collect();
        let databases: Vec<serde_json::Value> = applied
            .iter()
            .map(|a| {
                serde_json::json!({
                    "database": a.database,
                    "created_role": a.created_role,
                    "changes": a.changes.len(),
                    "not_repaired": a.unfixable.len(),
                })
            })
            .collect();
        ctx.print_json(&serde_json::json!({
            "dry_run": dry_run,
            "role": role,
            "created_role": applied.iter().any(|a| a.created_role),
            "changes": all_changes,
            "not_repaired": not_repaired,
            "databases": databases,
            "failed": failed_json(failed),
        }));
    } else if dry_run {
        // The statements, as a script a DBA could run (on a fleet, each
        // database's under a comment naming it).
        for a in applied {
            if fleet && !a.changes.is_empty() {
                super::out(&match a.database.as_str() {
                    CATALOG => "-- on the catalog\n\n".to_string(),
                    member => format!("-- on member {member}\n\n"),
                });
            }
            for change in &a.changes {
                super::out(&crate::schema::render::script(&change.statements, dialect));
            }
        }
        ctx.say(format!(
            "dry run: {changes} change(s) for role {role}, nothing changed"
        ));
    } else {
        for a in applied {
            for change in &a.changes {
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
                ctx.say(match a.database.as_str() {
                    CATALOG => format!("{what}: {objects}"),
                    member => format!("member {member}: {what}: {objects}"),
                });
            }
        }
        let all_fine = applied.iter().all(|a| a.unfixable.is_empty()) && failed.is_empty();
        ctx.say(format!(
            "{changes} change(s) made for role {role}{}{}",
            if fleet {
                format!(" on the catalog and {} member(s)", applied.len() - 1)
            } else {
                String::new()
            },
            if all_fine {
                "; grants and policies match"
            } else {
                ""
            }
        ));
    }
    for (a, p) in unfixable {
        eprintln!(
            "not repaired: {} (a DBA decides: pathfinder-db does not change other roles, role attributes or ownership)",
            describe(p, role, &a.database)
        );
    }
}

/// SQLite: the note, then the files others may use (repaired with `repair`).
fn sqlite_files(ctx: &Context, db: &crate::db::Database, repair: bool) -> anyhow::Result<u8> {
    if !ctx.quiet && !ctx.json {
        eprintln!("note: {SQLITE_NOTE}");
    }
    let mut session = db.connect_read_only()?;
    let (checked, open) = files::check_deployment(&mut session)?.unwrap_or_default();
    if repair {
        files::repair(&open)?;
    }
    // Another user's files stay as they were: no repair makes them ours.
    let unrepaired: Vec<_> = open.iter().filter(|f| f.other_owner.is_some()).collect();
    let fine = open.is_empty() || (repair && unrepaired.is_empty());
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "dialect": "sqlite",
            "roles": false,
            "files": checked,
            "ok": fine,
            "open_files": open,
            "repaired": repair,
        }));
    } else {
        for f in &open {
            let line = f.describe();
            super::out(&if repair && f.other_owner.is_none() {
                format!("made private: {line}\n")
            } else {
                format!("{line}\n")
            });
        }
        let line = format!(
            "{checked} SQLite file(s) and folder(s) checked, {}",
            match (open.len(), repair) {
                (0, _) => "all readable by their owner only".to_string(),
                (n, true) if unrepaired.is_empty() => {
                    format!("{n} made readable by their owner only")
                }
                (n, true) => format!(
                    "{} made readable by their owner only, {} another user's (chown them)",
                    n - unrepaired.len(),
                    unrepaired.len()
                ),
                (n, false) => format!(
                    "{n} open to others: `pathfinder-db grants apply` makes them 0600 (folders 0700; another user's need a chown)"
                ),
            }
        );
        // Files open to others are printed even with --quiet (cron mails them).
        if fine {
            ctx.say(line);
        } else {
            super::out(&format!("{line}\n"));
        }
    }
    Ok(if fine { 0 } else { crate::error::EXIT_ERROR })
}
