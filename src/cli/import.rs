use std::path::PathBuf;

use crate::import::{ImportRequest, import, plan};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An export written by `export` or `deprovision --export` (any dialect)
    pub file: PathBuf,

    /// Import as this user instead of the one the file names
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,

    /// The tenant key naming the tables here (for a name too long for this dialect)
    #[arg(long, value_name = "KEY")]
    pub tenant_key: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database()?;
    let mut session = db.connect()?;
    let request = ImportRequest {
        path: args.file.clone(),
        username: args.as_user.clone(),
        tenant_key: args.tenant_key.clone(),
    };
    let plan = plan(
        &mut session,
        &renderer,
        ctx.config.templates_dir.as_deref(),
        &request,
    )?;
    let master_key = super::keys::provision_master_key(ctx)?;
    let outcome = import(&mut session, &renderer, &plan, master_key)?;
    if ctx.json {
        let mut doc = serde_json::to_value(&outcome)?;
        doc["file"] = args.file.display().to_string().into();
        doc["failed"] = serde_json::json!([]);
        ctx.print_json(&doc);
    } else {
        ctx.say(format!(
            "imported {} rows into {} (tenant {}, version {}) from {} ({} export of {}); every value read back as in the file",
            outcome.rows,
            outcome.username,
            outcome.tenant_key,
            outcome.schema_version,
            args.file.display(),
            plan.header.dialect,
            plan.header.username
        ));
    }
    Ok(0)
}
