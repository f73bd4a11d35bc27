use std::path::PathBuf;

use crate::error::UsageError;
use crate::tenants::import::{ImportRequest, cancel, import, plan};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An export written by `export` or `deprovision --export` (any dialect)
    #[arg(required_unless_present = "cancel")]
    pub file: Option<PathBuf>,

    /// Import as this user instead of the one the file names
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,

    /// The tenant key naming the tables here (for a name too long for this dialect)
    #[arg(long, value_name = "KEY")]
    pub tenant_key: Option<String>,

    /// Remove the tenant an interrupted import left `importing` (the user from
    /// --as, or the one the file names)
    #[arg(long, conflicts_with = "tenant_key")]
    pub cancel: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if args.cancel {
        return run_cancel(ctx, &args);
    }
    let file = args.file.clone().unwrap_or_default();
    let (db, renderer) = ctx.open_database()?;
    let mut session = db.connect()?;
    let request = ImportRequest {
        path: file.clone(),
        username: args.as_user.clone(),
        tenant_key: args.tenant_key.clone(),
        database: ctx.database.clone(),
    };
    let plan = plan(
        &mut session,
        &renderer,
        ctx.config.templates_dir.as_deref(),
        &request,
    )?;
    if plan.already {
        if ctx.json {
            ctx.print_json(&serde_json::json!({
                "username": plan.username.as_str(),
                "tenant_key": plan.key.as_str(),
                "file": file.display().to_string(),
                "outcome": "already_imported",
                "failed": [],
            }));
        } else {
            ctx.say(format!(
                "{} was imported from {} already (tenant {}): nothing to do",
                plan.username,
                file.display(),
                plan.key
            ));
        }
        return Ok(0);
    }
    let master_key = super::keys::provision_master_key(ctx)?;
    let outcome = import(&mut session, &renderer, &plan, master_key)?;
    if outcome.key_created {
        // Said even under --quiet: a DR site that forgot the keys reads nothing.
        eprintln!(
            "note: {} had no encryption key here: a new one was made, which cannot open fields encrypted where the export was taken; to keep the user's key, copy its pf_encryption_keys row (same master key) before importing",
            outcome.username
        );
    }
    if ctx.json {
        let mut doc = serde_json::to_value(&outcome)?;
        doc["file"] = file.display().to_string().into();
        doc["failed"] = serde_json::json!([]);
        ctx.print_json(&doc);
    } else {
        ctx.say(format!(
            "imported {} rows into {} (tenant {}, version {}) from {} ({} export of {}); every value read back as in the file",
            outcome.rows,
            outcome.username,
            outcome.tenant_key,
            outcome.schema_version,
            file.display(),
            plan.header.dialect,
            plan.header.username
        ));
    }
    Ok(0)
}

/// `import --cancel`: the user is --as, or the one the file's header names.
fn run_cancel(ctx: &Context, args: &Args) -> anyhow::Result<u8> {
    let name = match (&args.as_user, &args.file) {
        (Some(user), _) => user.clone(),
        (None, Some(file)) => crate::tenants::export::verify(file)?.0.username,
        (None, None) => {
            return Err(UsageError::new(
                "import --cancel needs the user: --as USER, or the export file",
            )
            .into());
        }
    };
    let user = super::parse_usernames(ctx, &[name])?.remove(0);
    let (db, renderer) = ctx.open_database_existing()?;
    let mut session = db.connect()?;
    cancel(&mut session, &renderer, &user)?;
    if ctx.json {
        ctx.print_json(
            &serde_json::json!({"username": user.as_str(), "outcome": "cancelled", "failed": []}),
        );
    } else {
        ctx.say(format!(
            "the interrupted import of {user} was removed: nothing of it is kept"
        ));
    }
    Ok(0)
}
