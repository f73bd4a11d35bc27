use std::path::PathBuf;

use crate::error::{PartialFailure, UsageError};
use crate::tenants::provision::{
    DeprovisionOptions, DeprovisionOutcome, DeprovisionPlan, cancel_deprovision, deprovision,
    plan_deprovision,
};

use super::{Context, parse_usernames};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to remove
    #[arg(required = true)]
    pub users: Vec<String>,

    /// Copy every row into the user's archive tables (kept) before dropping
    #[arg(long, conflicts_with = "export")]
    pub archive: bool,

    /// Write every row (archived ones too) to this file before dropping; one user only.
    /// An existing file is never replaced unless --force is given
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,

    /// Replace an existing --export file
    #[arg(long, requires = "export")]
    pub force: bool,

    /// Leave erasing the deleted keys' bytes from the database's files to a later
    /// `keys erase` (from cron): on PostgreSQL the erasure rewrites the whole key table,
    /// which the application's key reads wait for (seconds at a million users)
    #[arg(long)]
    pub erase_later: bool,

    /// Take back a deprovisioning that stopped half-way (while every table is still there)
    #[arg(long, conflicts_with_all = ["archive", "export", "force", "erase_later"])]
    pub cancel: bool,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // Every name is checked before anything is touched.
    let users = parse_usernames(ctx, &args.users)?;
    if args.export.is_some() && users.len() != 1 {
        return Err(
            UsageError::new("--export writes one user's rows: give exactly one user").into(),
        );
    }
    let (db, renderer) = ctx.open_database_existing()?;
    if args.cancel {
        return cancel(ctx, &db, &users);
    }
    let options = DeprovisionOptions {
        archive: args.archive,
        export: args.export.clone(),
        force: args.force,
        templates_dir: ctx.config.templates_dir.clone(),
    };

    // Everything that can be checked, for every user, before anything changes.
    let mut plans: Vec<DeprovisionPlan> = Vec::new();
    let mut report = Vec::new();
    {
        let mut session = db.connect()?;
        for user in &users {
            match plan_deprovision(&mut session, user, &options)? {
                Some(plan) => plans.push(plan),
                None => {
                    ctx.say(format!("{user} is already deprovisioned: nothing to do"));
                    report.push(serde_json::json!({"username": user.as_str(), "outcome": "already_removed"}));
                }
            }
        }
    }
    if args.archive || args.export.is_some() {
        for plan in plans.iter().filter(|p| !p.missing_tables.is_empty()) {
            // Said even under --quiet: rows the DBA may count on are not there.
            eprintln!(
                "note: {} lacks table(s) {}: no rows of them to keep (`pathfinder-db verify {}`)",
                plan.record.username,
                plan.missing_tables.join(", "),
                plan.record.username
            );
        }
    }
    if plans.is_empty() {
        if ctx.json {
            ctx.print_json(&serde_json::json!({"tenants": report, "failed": []}));
        }
        return Ok(0);
    }
    let keep = if args.archive {
        "their rows are copied to archive tables first"
    } else if args.export.is_some() {
        "their rows are exported first"
    } else {
        "their data is deleted"
    };
    let names = plans
        .iter()
        .map(|p| p.record.username.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // Where the tables are: the catalog, or the members that hold them.
    let mut places: Vec<&str> = plans.iter().map(|p| p.record.database.as_str()).collect();
    places.sort_unstable();
    places.dedup();
    let place = match places.as_slice() {
        [crate::fleet::members::CATALOG] => db.display_url().to_string(),
        _ => format!("member(s) {}", places.join(", ")),
    };
    ctx.confirm(&format!(
        "Remove the tenant tables of {names} from {place} ({keep})?"
    ))?;

    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let results = crate::parallel::for_each(
        &db,
        &plans,
        jobs,
        false,
        |session, plan| deprovision(session, &renderer, plan, &options),
        |_, _| {},
    );
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    let mut keys_shredded = 0;
    for (plan, result) in plans.iter().zip(results) {
        let user = plan.record.username.as_str();
        match result {
            Some(Ok(outcome)) => {
                if let DeprovisionOutcome::Removed {
                    archived_rows,
                    exported_rows,
                    finished_earlier_run,
                    had_no_tables,
                    keys_shredded: shredded,
                    ..
                } = &outcome
                {
                    keys_shredded += shredded;
                    let mut line = format!("deprovisioned {user}");
                    if *had_no_tables {
                        line.push_str(" (it had no tables: only its registry entry was removed)");
                    } else if *finished_earlier_run {
                        line.push_str(" (finished a deprovisioning that had stopped after dropping the tables");
                        if let Some(path) = &args.export {
                            // The interrupted run wrote its export to the file
                            // it was given, which may be another.
                            let theirs =
                                crate::tenants::export::verify(path).is_ok_and(|(h, _)| {
                                    h.username == user && h.tenant_key == plan.record.tenant_key
                                });
                            line.push_str(&if theirs {
                                format!("; its export is {}, left as it is", path.display())
                            } else {
                                format!(
                                    "; {} was not written: the interrupted run wrote its export to the file it was given",
                                    path.display()
                                )
                            });
                        }
                        line.push(')');
                    } else {
                        if args.archive {
                            line.push_str(&format!(", {archived_rows} rows archived"));
                        }
                        if let Some(path) = &args.export {
                            if plan.reused_export {
                                line.push_str(&format!(
                                    ", kept the complete export {} written by the interrupted run",
                                    path.display()
                                ));
                            } else {
                                line.push_str(&format!(
                                    ", {exported_rows} rows exported to {}",
                                    path.display()
                                ));
                            }
                        }
                    }
                    ctx.say(line);
                } else {
                    ctx.say(format!("{user} is already deprovisioned: nothing to do"));
                }
                let mut entry = serde_json::to_value(&outcome)?;
                entry["username"] = user.into();
                report.push(entry);
            }
            Some(Err(err)) => {
                let message = crate::error::one_line(&err);
                if plans.len() == 1 && report.is_empty() && !ctx.json {
                    // Cut off, it may have stopped half-way: say where to look.
                    let lost = match crate::db::unreachable(&err) {
                        true => {
                            " (a database was lost: once it answers, `pathfinder-db doctor` names what this run left and the command that finishes it)"
                        }
                        false => "",
                    };
                    return Err(err.context(format!("cannot deprovision {user}{lost}")));
                }
                eprintln!("error: {user}: {message}");
                failed.push(user.to_string());
                let failure =
                    serde_json::json!({"username": user, "outcome": "failed", "error": message});
                errors.push(failure.clone());
                report.push(failure);
            }
            None => {}
        }
    }
    // The shredded keys' bytes are erased once, for the whole run, after
    // every deletion committed (on PostgreSQL this rewrites the key table).
    let mut erase_error = None;
    let erase_later = keys_shredded > 0 && args.erase_later;
    if erase_later {
        super::keys::erasure_left_for_later(ctx);
    } else if keys_shredded > 0
        && let Err(e) = crate::security::keys::erase_deleted_keys(&db)
    {
        let message = crate::error::one_line(&e);
        eprintln!("error: {message}");
        erase_error = Some(message);
    }
    if ctx.json {
        let mut doc = serde_json::json!({ "tenants": report, "failed": errors });
        if let Some(message) = &erase_error {
            doc["erase_error"] = message.as_str().into();
        }
        if erase_later {
            doc["erase"] = "later".into();
        }
        ctx.print_json(&doc);
    }
    if failed.is_empty() && erase_error.is_some() {
        Ok(crate::error::EXIT_ERROR)
    } else if failed.is_empty() {
        Ok(0)
    } else if failed.len() < users.len() {
        Err(PartialFailure::new(users.len(), &failed).into())
    } else if users.len() == 1 {
        Ok(crate::error::EXIT_ERROR)
    } else {
        Err(anyhow::anyhow!("all {} tenants failed", users.len()))
    }
}

fn cancel(
    ctx: &Context,
    db: &crate::db::Database,
    users: &[crate::schema::tenant::Username],
) -> anyhow::Result<u8> {
    let mut session = db.connect()?;
    let mut report = Vec::new();
    for user in users {
        cancel_deprovision(&mut session, user)?;
        ctx.say(format!(
            "cancelled the deprovisioning of {user}: it is active again"
        ));
        report.push(serde_json::json!({"username": user.as_str(), "outcome": "cancelled"}));
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "tenants": report, "failed": [] }));
    }
    Ok(0)
}
