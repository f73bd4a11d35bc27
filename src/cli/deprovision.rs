use std::path::PathBuf;

use crate::error::PartialFailure;
use crate::provision::{DeprovisionOptions, DeprovisionOutcome, deprovision};

use super::{Context, parse_usernames};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to remove
    #[arg(required = true)]
    pub users: Vec<String>,

    /// Copy every row into the user's archive tables (kept) before dropping
    #[arg(long)]
    pub archive: bool,

    /// Write every row to this file (JSON Lines) before dropping; one user only
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let users = parse_usernames(ctx, &args.users)?;
    if args.export.is_some() && users.len() != 1 {
        return Err(crate::error::UsageError::new(
            "--export writes one user's rows: give exactly one user",
        )
        .into());
    }
    let (db, renderer) = ctx.open_database()?;
    let keep = if args.archive {
        "their rows are copied to archive tables first"
    } else if args.export.is_some() {
        "their rows are exported first"
    } else {
        "their data is deleted"
    };
    let names = users
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ctx.confirm(&format!(
        "Remove the tenant tables of {names} from {} ({keep})?",
        db.display_url()
    ))?;

    let options = DeprovisionOptions {
        archive: args.archive,
        export: args.export.clone(),
    };
    let mut session = db.connect()?;
    let mut failed = Vec::new();
    let mut report = Vec::new();
    for user in &users {
        match deprovision(&mut session, &renderer, user, &options) {
            Ok(outcome) => {
                match &outcome {
                    DeprovisionOutcome::Removed {
                        archived_rows,
                        exported_rows,
                        ..
                    } => {
                        let mut line = format!("deprovisioned {user}");
                        if args.archive {
                            line.push_str(&format!(", {archived_rows} rows archived"));
                        }
                        if let Some(path) = &args.export {
                            line.push_str(&format!(
                                ", {exported_rows} rows exported to {}",
                                path.display()
                            ));
                        }
                        ctx.say(line);
                    }
                    DeprovisionOutcome::AlreadyRemoved => {
                        ctx.say(format!("{user} is already deprovisioned: nothing to do"))
                    }
                }
                report.push(serde_json::json!({"user": user.as_str(), "result": outcome}));
            }
            Err(err) => {
                let message = crate::error::one_line(&err);
                if users.len() == 1 {
                    return Err(err);
                }
                eprintln!("error: {user}: {message}");
                failed.push(user.to_string());
                report.push(serde_json::json!({"user": user.as_str(), "result": {"outcome": "failed", "error": message}}));
            }
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "tenants": report }));
    }
    if failed.is_empty() {
        Ok(0)
    } else if failed.len() < users.len() {
        Err(PartialFailure::new(users.len(), &failed).into())
    } else {
        Err(anyhow::anyhow!("all {} tenants failed", users.len()))
    }
}
