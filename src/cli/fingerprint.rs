use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::catalog::registry;
use crate::error::UsageError;
use crate::tenants::fingerprint::{
    Document, TenantFingerprint, check_out, compare, fingerprint_tenant, write_document,
};

use super::{Context, parse_usernames, select_tenants};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A fingerprint compares copies in the same dialect: the checksums are computed by \
                  the database (PostgreSQL md5, Oracle STANDARD_HASH, a SQLite function), so the \
                  same rows give other checksums in another dialect.\n\n\
                  Backup verification: `fingerprint --all --out prod.json` on production, restore \
                  the backup into a clone, then `fingerprint --compare prod.json` on the clone: \
                  exit 0 when equal, 1 when any table differs, 3 when some tenants could not be read."
)]
pub struct Args {
    /// Users to fingerprint (with --compare: only these are compared)
    #[arg(required_unless_present_any = ["all", "compare"], conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every live tenant (with --compare: also report tenants here that the file lacks)
    #[arg(long)]
    pub all: bool,

    /// Write the fingerprint (a JSON document) to FILE; never replaced unless --force
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    pub out: Option<PathBuf>,

    /// Replace an existing --out file
    #[arg(long, requires = "out")]
    pub force: bool,

    /// Compare with a fingerprint taken earlier or on another copy (same dialect):
    /// exit 0 when equal, 1 when different
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    // Everything that can be refused is refused before the first query.
    if let Some(out) = &args.out {
        check_out(out, args.force)?;
    }
    let expected = args.compare.as_deref().map(Document::read).transpose()?;
    let (db, _renderer) = ctx.open_database_read_only()?;
    if let (Some(doc), Some(file)) = (&expected, &args.compare)
        && doc.dialect != db.dialect().name()
    {
        return Err(UsageError::new(format!(
            "{} was taken on {}, this database is {}: a fingerprint compares copies in the same dialect",
            file.display(),
            doc.dialect,
            db.dialect().name()
        ))
        .into());
    }
    let mut session = db.connect_read_only()?;
    let tenants = match &expected {
        // The tenants of the file (those this registry knows; the others
        // are missing here).
        Some(doc) if wanted.is_empty() && !args.all => {
            let names: BTreeSet<&str> = doc.tenants.iter().map(|t| t.username.as_str()).collect();
            registry::list(session.system(), false)?
                .into_iter()
                .filter(|t| names.contains(t.username.as_str()))
                .collect()
        }
        // Named users that this registry lacks are missing here, unless
        // the file lacks them too.
        Some(doc) if !wanted.is_empty() => {
            let mut out = Vec::new();
            for user in &wanted {
                // A deprovisioned tenant is gone here, as one never known.
                let here = registry::get(session.system(), user.as_str())?
                    .filter(|t| t.status != registry::Status::Deprovisioned);
                match here {
                    Some(t) => out.push(t),
                    None if doc.tenants.iter().any(|t| t.username == user.as_str()) => {}
                    None => {
                        return Err(UsageError::new(format!(
                            "no tenant named {user} here or in {}",
                            args.compare
                                .as_deref()
                                .unwrap_or(std::path::Path::new(""))
                                .display()
                        ))
                        .into());
                    }
                }
            }
            out
        }
        _ => select_tenants(ctx, session.system(), &wanted, args.all, |t| {
            t.status.is_live()
        })?,
    };
    drop(session);
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let run = super::for_tenants(
        ctx,
        &db,
        &tenants,
        jobs,
        "fingerprinting",
        true,
        fingerprint_tenant,
    );
    let found: Vec<TenantFingerprint> = run.done.iter().map(|(_, f)| f.clone()).collect();

    if let (Some(doc), Some(file)) = (expected, &args.compare) {
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|u| u.as_str()).collect();
        let expected: Vec<TenantFingerprint> = doc
            .tenants
            .into_iter()
            .filter(|t| wanted_names.is_empty() || wanted_names.contains(t.username.as_str()))
            .collect();
        let failed: Vec<String> = run.failed_names.clone();
        let differences = compare(&expected, &found, &failed);
        let differing: BTreeSet<&str> = differences.iter().map(|d| d.username()).collect();
        if ctx.json {
            ctx.print_json(&serde_json::json!({
                "file": file.display().to_string(),
                "taken_at": doc.taken_at,
                "equal": differences.is_empty(),
                "compared": found.len(),
                "differences": differences,
                "file_failed": doc.failed,
                "failed": run.failed,
            }));
        } else {
            for d in &differences {
                super::out(&format!("{}\n", d.describe()));
            }
            if !doc.failed.is_empty() {
                ctx.say(format!(
                    "{} tenant(s) had failed when {} was taken: not compared ({})",
                    doc.failed.len(),
                    file.display(),
                    doc.failed
                        .iter()
                        .map(|f| f.username.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            ctx.say(if differences.is_empty() {
                format!(
                    "{} tenant(s) compared with {} (taken {}): equal",
                    found.len(),
                    file.display(),
                    doc.taken_at
                )
            } else {
                format!(
                    "{} tenant(s) compared with {} (taken {}): {} difference(s) in {} tenant(s)",
                    found.len(),
                    file.display(),
                    doc.taken_at,
                    differences.len(),
                    differing.len()
                )
            });
        }
        // Tenants that could not be read make the run partial (exit 3),
        // as for every command; the differences found are printed above.
        run.exit("fingerprint")?;
        return Ok(if differences.is_empty() {
            crate::error::EXIT_OK
        } else {
            crate::error::EXIT_ERROR
        });
    }

    let failed = run
        .failed
        .iter()
        .map(|f| crate::tenants::fingerprint::Failure {
            username: f["username"].as_str().unwrap_or_default().to_string(),
            error: f["error"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    let doc = Document::new(db.dialect(), found, failed);
    if let Some(out) = &args.out {
        write_document(out, args.force, &doc)?;
    }
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&doc)?);
    } else {
        print_table(ctx, &doc.tenants);
        let tables: usize = doc.tenants.iter().map(|t| t.tables.len()).sum();
        let rows: i64 = doc.tenants.iter().map(TenantFingerprint::rows).sum();
        ctx.say(format!(
            "{} tenant(s), {tables} table(s), {rows} rows fingerprinted{}{}",
            doc.tenants.len(),
            match &args.out {
                Some(out) => format!("; written to {}", out.display()),
                None => String::new(),
            },
            if doc.failed.is_empty() {
                String::new()
            } else {
                format!("; {} failed", doc.failed.len())
            }
        ));
    }
    run.exit("fingerprint")
}

fn print_table(ctx: &Context, tenants: &[TenantFingerprint]) {
    if tenants.is_empty() {
        return;
    }
    let user_width = tenants
        .iter()
        .map(|t| t.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let table_width = tenants
        .iter()
        .flat_map(|t| t.tables.iter().map(|x| x.table.len()))
        .max()
        .unwrap_or(5)
        .max(5);
    ctx.say(format!(
        "{:user_width$}  {:table_width$}  {:>10}  CHECKSUM",
        "USERNAME", "TABLE", "ROWS"
    ));
    for t in tenants {
        for table in &t.tables {
            ctx.say(format!(
                "{:user_width$}  {:table_width$}  {:>10}  {}",
                t.username, table.table, table.rows, table.checksum
            ));
        }
    }
}
