use std::path::PathBuf;

use crate::error::{PartialFailure, UsageError};
use crate::migrate::runner::{self, Order, Plan};
use crate::schema::render::{Scope, script};
use crate::schema::tenant::TenantKey;

use super::{Context, parse_usernames, progress_bar, read_names_file, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to migrate
    #[arg(conflicts_with_all = ["all", "tenants_file"])]
    pub users: Vec<String>,

    /// Migrate every tenant that is behind (or failed last time)
    #[arg(long)]
    pub all: bool,

    /// Read usernames from a file, one per line
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    pub tenants_file: Option<PathBuf>,

    /// Target version [default: the latest]
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u32>,

    #[command(flatten)]
    pub jobs: super::JobsArg,

    /// Stop handing out tenants after the first failure
    #[arg(long)]
    pub fail_fast: bool,

    /// Print the SQL each tenant would get, changing nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Migrate at most N tenants in this run (a canary slice)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Which tenants go first
    #[arg(long, value_enum, default_value_t = Order::Oldest)]
    pub order: Order,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let mut names = args.users.clone();
    if let Some(file) = &args.tenants_file {
        names.extend(read_names_file(file)?);
    }
    if !args.all && names.is_empty() {
        return Err(
            UsageError::new("say which tenants: --all, usernames, or --tenants-file FILE").into(),
        );
    }
    let wanted = if args.all {
        Vec::new()
    } else {
        parse_usernames(ctx, &names)?
    };
    if args.limit == Some(0) {
        return Err(UsageError::new("--limit must be at least 1").into());
    }
    let (db, renderer) = if args.dry_run {
        ctx.open_database_read_only()?
    } else {
        ctx.open_database_upgrading()?
    };
    let latest = renderer.latest_version(Scope::Tenant);
    let target = args.to.unwrap_or(latest);
    if target == 0 || target > latest {
        return Err(UsageError::new(format!(
            "there is no tenant version {target}: versions are 1 to {latest}"
        ))
        .into());
    }
    let usernames = if args.all {
        None
    } else {
        // Unknown names are an error before anything runs.
        let mut session = db.connect_read_only()?;
        let found = select_tenants(ctx, session.system(), &wanted, false, |_| true)?;
        Some(found.into_iter().map(|t| t.username).collect::<Vec<_>>())
    };
    let mut plan = Plan {
        usernames,
        target,
        order: args.order,
        limit: args.limit,
        jobs: if args.dry_run {
            1
        } else {
            ctx.jobs(&db, args.jobs.jobs)?
        },
        max_jobs: 1,
        fail_fast: args.fail_fast,
        database: {
            let mut session = db.connect_read_only()?;
            ctx.member_filter(session.system())?
        },
    };
    // Named tenants restored from an older backup: their tables are behind
    // the registry, which is set back so that this run brings them up.
    if let Some(names) = &plan.usernames {
        let mut session = if args.dry_run {
            db.connect_read_only()?
        } else {
            db.connect()?
        };
        for r in runner::resync_restored(&mut session, names, args.dry_run)? {
            eprintln!(
                "note: {}: its tables are at version {} (restored from an older backup?) while the registry said {}: {} {}",
                r.username,
                r.history,
                r.registry,
                if args.dry_run {
                    "it would be recorded as"
                } else {
                    "recorded as"
                },
                r.history
            );
        }
    }
    let pending = runner::pending(db.connect_read_only()?.system(), &plan)?;

    if args.dry_run {
        return dry_run(ctx, &renderer, &pending, target);
    }
    if pending.is_empty() {
        if ctx.json {
            ctx.print_json(&serde_json::to_value(runner::Report {
                target,
                ..Default::default()
            })?);
        } else {
            ctx.say(format!(
                "nothing to migrate: every selected tenant is at version {target} or later"
            ));
        }
        return Ok(0);
    }

    let members = super::distinct(pending.iter().map(|p| p.database.as_str()));
    plan.max_jobs = ctx.overall_jobs(&db, plan.jobs, members)?;
    let bar = progress_bar(ctx, pending.len(), "migrating");
    let report = runner::run(&db, &renderer, &plan, &pending, &|_| bar.inc(1));
    bar.finish_and_clear();

    if ctx.json {
        ctx.print_json(&serde_json::to_value(&report)?);
    } else {
        let applied = report
            .migrated
            .iter()
            .filter(|r| !r.applied.is_empty())
            .count();
        ctx.say(format!(
            "{applied} tenant(s) migrated to version {target}, {} already there, {} failed{}",
            report.migrated.len() - applied,
            report.failed.len(),
            if report.skipped_busy.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} being migrated by another process",
                    report.skipped_busy.len()
                )
            }
        ));
        for failed in &report.failed {
            eprintln!(
                "failed: {} (at version {}): {}",
                failed.username,
                failed.from_version,
                failed.error.as_deref().unwrap_or("")
            );
        }
    }
    let failed: Vec<String> = report.failed.iter().map(|f| f.username.clone()).collect();
    if failed.is_empty() {
        Ok(0)
    } else if !report.migrated.is_empty() || failed.len() < pending.len() {
        Err(PartialFailure::new(pending.len(), &failed).into())
    } else if ctx.json {
        Ok(crate::error::EXIT_ERROR)
    } else {
        Err(anyhow::anyhow!("every selected tenant failed to migrate"))
    }
}

fn dry_run(
    ctx: &Context,
    renderer: &crate::schema::render::Renderer,
    pending: &[runner::Pending],
    target: u32,
) -> anyhow::Result<u8> {
    let dialect = renderer.dialect();
    let mut json = Vec::new();
    for tenant in pending {
        let key = TenantKey::parse(&tenant.tenant_key, dialect)?;
        let from = tenant.schema_version.max(0) as u32;
        let migrations: Vec<_> = renderer
            .tenant_migrations(&key)?
            .into_iter()
            .filter(|m| m.version > from && m.version <= target)
            .collect();
        if ctx.json {
            json.push(serde_json::json!({
                "username": tenant.username,
                "tenant_key": tenant.tenant_key,
                "database": tenant.database,
                "from_version": from,
                "to_version": target,
                "migrations": migrations.iter().map(|m| serde_json::json!({
                    "version": m.version, "name": m.name,
                    "statements": m.statements.iter().map(|s| s.sql.clone()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }));
        } else {
            super::out(&format!(
                "-- tenant {} (key {key}): version {from} -> {target}\n",
                tenant.username
            ));
            for m in &migrations {
                super::out(&format!(
                    "-- {}\n{}",
                    m.name,
                    script(&m.statements, dialect)
                ));
            }
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({"dry_run": true, "target": target, "tenants": json}));
    } else if pending.is_empty() {
        ctx.say(format!(
            "-- nothing to migrate: every selected tenant is at version {target} or later"
        ));
    }
    Ok(0)
}
