use std::path::PathBuf;

use crate::error::UsageError;
use crate::tenants::export::{ExportTarget, export_tenant, verify};

use super::{Context, parse_usernames};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user whose rows to export (archived ones too)
    #[arg(required_unless_present = "verify", conflicts_with = "verify")]
    pub user: Option<String>,

    /// The file to write (JSON Lines with a manifest); never replaced unless --force
    #[arg(long, value_name = "FILE", required_unless_present = "verify")]
    pub out: Option<PathBuf>,

    /// Replace an existing --out file
    #[arg(long, requires = "out")]
    pub force: bool,

    /// Check an export against its manifest (counts and checksums) instead: backup verification
    #[arg(long, value_name = "FILE", conflicts_with_all = ["out", "force"])]
    pub verify: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if let Some(path) = &args.verify {
        let (header, manifest) = verify(path)?;
        if ctx.json {
            ctx.print_json(&serde_json::json!({
                "file": path.display().to_string(),
                "ok": true,
                "header": header,
                "manifest": manifest,
                "failed": [],
            }));
        } else {
            ctx.say(format!(
                "{}: intact: {} rows in {} tables of user {} (tenant {}, version {}, {}), exported {} by {}",
                path.display(),
                manifest.rows,
                manifest.tables.len(),
                header.username,
                header.tenant_key,
                header.schema_version,
                header.dialect,
                header.exported_at,
                header.tool
            ));
        }
        return Ok(0);
    }
    let (Some(user), Some(out)) = (&args.user, &args.out) else {
        return Err(UsageError::new("give a user and --out FILE, or --verify FILE").into());
    };
    // Not stdout: the export is written beside its final name and renamed
    // into place once complete and checked.
    if out.as_os_str() == "-" {
        return Err(UsageError::new(
            "--out - would make a file named -: give the export file's path (it is written in full, checked, then put in place)",
        )
        .into());
    }
    let user = parse_usernames(ctx, std::slice::from_ref(user))?.remove(0);
    let (db, _renderer) = ctx.open_database_existing()?;
    let mut session = db.connect()?;
    // Where the file goes is checked before the tenant is touched.
    let needed = {
        let record =
            crate::catalog::registry::get(session.system(), user.as_str())?.ok_or_else(|| {
                UsageError::new(format!(
                    "no tenant named {user}: `pathfinder-db tenants` lists them"
                ))
            })?;
        let key = crate::schema::tenant::TenantKey::parse(&record.tenant_key, db.dialect())?;
        match session.tenant_file(&key)? {
            Some(f) => std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
            None => match session.tenant(&key, crate::db::Open::Existing)? {
                Some(mut conn) => conn.table_bytes(&key.prefix())?,
                None => 0,
            },
        }
    };
    let target = ExportTarget::check(out, args.force, needed)?;
    let (header, manifest) = export_tenant(
        &mut session,
        user.as_str(),
        &target,
        ctx.config.templates_dir.as_deref(),
    )?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "username": header.username,
            "tenant_key": header.tenant_key,
            "file": out.display().to_string(),
            "schema_version": header.schema_version,
            "rows": manifest.rows,
            "tables": manifest.tables,
            "failed": [],
        }));
    } else {
        ctx.say(format!(
            "exported {} rows of {user} (tenant {}, version {}) to {}",
            manifest.rows,
            header.tenant_key,
            header.schema_version,
            out.display()
        ));
    }
    Ok(0)
}
