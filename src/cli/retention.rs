use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::catalog::registry::{Status, iso_utc};
use crate::db::Tx;
use crate::error::{PartialFailure, UsageError};
use crate::jobs::retention::{
    self, Options, Plan, Selection, Stop, StopReason, UnitReport, UnitStatus,
};

use super::{Context, parse_usernames, progress_bar, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Sweep tenants' (and the system) tables by the policies in force: archive or delete rows past their retention
    Run(RunArgs),
    /// Move archived rows of one tenant back to its live tables (the undo of a wrong policy)
    Restore(RestoreArgs),
}

/// The largest batch: every id of a batch is a bind value.
const MAX_BATCH: u64 = 10_000;

/// Rows per batch of `retention run`: each batch is one transaction, so its
/// commit, round trips and locks are paid per batch; 5000 rows keep a batch
/// to tens of milliseconds (locks, SQLite's write lock on the tenant file)
/// while those costs stay a small part of the work (see benches/RETENTION.md).
const DEFAULT_BATCH: u64 = 5000;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Users whose tables to sweep
    #[arg(conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every active tenant, and the system tables (pf_audit_log, pf_user_sessions)
    #[arg(long)]
    pub all: bool,

    /// Only this policy (repeat for several) [default: every policy in force]
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,

    /// Print per table the rows a real run would take and the cutoff; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Rows per batch; each batch is one transaction
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH,
          value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    pub batch_size: u64,

    /// Stop cleanly between batches after this long (90s, 30m, 2h, 1h30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_runtime: Option<Duration>,

    /// Stop cleanly between batches once this file exists (a run does not start while it does)
    /// [default: pathfinder-db-retention.stop in the temporary directory]
    #[arg(long, value_name = "FILE")]
    pub stop_file: Option<PathBuf>,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The user whose rows to restore
    pub user: String,

    /// The table(s) to restore (experiences, skills, chat_messages, ...; repeat or separate with
    /// commas); parents are restored before their children
    #[arg(
        long = "table",
        value_name = "TABLE",
        value_delimiter = ',',
        required = true
    )]
    pub tables: Vec<String>,

    /// Restore the rows with these ids (comma-separated)
    #[arg(
        long,
        value_name = "ID,...",
        value_delimiter = ',',
        required_unless_present = "archived_since",
        conflicts_with = "archived_since"
    )]
    pub ids: Vec<String>,

    /// Restore every row archived at or after TIME: a date or date-time in UTC (2026-01-31,
    /// "2026-01-31 10:00:00", 2026-01-31T10:00:00Z) or an age (90m, 2h, 7d), as `audit --since`
    #[arg(long, value_name = "TIME", value_parser = super::audit::TimeArg::parse)]
    pub archived_since: Option<super::audit::TimeArg>,

    /// Rows per batch; each batch is one transaction
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    pub batch_size: u64,
}

/// `90`, `90s`, `500ms`, `30m`, `2h`, `1d`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number with a unit, such as 90s, 30m, 2h or 1h30m"
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        // Checked: an absurd number is refused, never wrapped into a short duration.
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    Ok(total)
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        Sub::Run(a) => sweep(ctx, a),
        Sub::Restore(a) => restore(ctx, a),
    }
}

fn default_stop_file() -> PathBuf {
    std::env::temp_dir().join("pathfinder-db-retention.stop")
}

fn sweep(ctx: &Context, args: RunArgs) -> anyhow::Result<u8> {
    if !args.all && args.users.is_empty() {
        return Err(UsageError::new(
            "say which tenants: --all (every tenant and the system tables) or usernames",
        )
        .into());
    }
    let wanted = parse_usernames(ctx, &args.users)?;
    let (db, renderer) = ctx.open_for(args.dry_run)?;
    let mut session = db.connect_as(args.dry_run)?;
    if args.dry_run && !crate::migrate::system_is_current(session.system(), &renderer)? {
        return Err(UsageError::new(format!(
            "the system schema of {} is older than this pathfinder-db: run `pathfinder-db init` to upgrade it",
            db.display_url()
        ))
        .into());
    }
    // The policies in force, and every cutoff, fixed now.
    let stored = crate::jobs::policy::stored(session.system())?;
    let known: Vec<&str> = stored
        .iter()
        .map(|s| s.policy.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    for name in &args.policies {
        if !known.contains(&name.as_str()) {
            return Err(UsageError::new(format!(
                "no policy named {name:?} is in force (policies: {}): `pathfinder-db policies list` shows them",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
            .into());
        }
    }
    let policies: Vec<crate::jobs::policy::Policy> = stored
        .into_iter()
        .map(|s| s.policy)
        .filter(|p| !p.name.is_empty())
        .filter(|p| args.policies.is_empty() || args.policies.contains(&p.name))
        .collect();
    if policies.is_empty() {
        return Err(UsageError::new(format!(
            "no retention policy is in force: put policy files in {}/ and run `pathfinder-db policies apply`",
            ctx.config.policies_dir.display()
        ))
        .into());
    }
    let plan = Plan::new(policies, time::OffsetDateTime::now_utc());
    let tenants = select_tenants(ctx, session.system(), &wanted, args.all, |t| {
        t.status == Status::Active
    })?;
    drop(session);
    let options = Options {
        batch_size: args.batch_size,
        dry_run: args.dry_run,
    };
    let stop_file = args.stop_file.clone().unwrap_or_else(default_stop_file);
    if let Some(Some(owner)) = retention::stop_file_owner(&stop_file) {
        eprintln!(
            "warning: the stop file {} belongs to user id {owner}, neither this user nor root: ignored (remove it, or give --stop-file a path of your own)",
            stop_file.display()
        );
    }
    let stop = Stop::new(args.max_runtime, Some(stop_file.clone()));
    let started = Instant::now();
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;

    // Only the tenants that may have rows due are visited; the others are
    // reported as a visit would have (a stopped run visits none).
    let mut units: Vec<retention::Unit> = Vec::new();
    if args.all && !plan.system_steps().is_empty() {
        units.push(retention::Unit::System);
    }
    // The reports in the tenants' order: None where a visit will tell.
    let mut in_order: Vec<Option<UnitReport>> = Vec::new();
    if !plan.tenant_steps().is_empty() {
        let due = if stop.check().is_some() {
            vec![true; tenants.len()]
        } else {
            retention::may_have_rows_due(&db, &plan, &tenants, jobs, args.dry_run)
        };
        for (tenant, due) in tenants.into_iter().zip(due) {
            if due {
                in_order.push(None);
                units.push(retention::Unit::Tenant(Box::new(tenant)));
            } else {
                in_order.push(Some(retention::nothing_due(&plan, &tenant, db.dialect())));
            }
        }
    }

    let mut reports: Vec<UnitReport> = if args.dry_run {
        let mut session = db.connect_read_only()?;
        units
            .iter()
            .map(|u| retention::sweep_unit(&mut session, &renderer, &plan, options, &stop, u))
            .collect()
    } else {
        let members = super::distinct(units.iter().map(retention::Unit::database));
        let limit = ctx.overall_jobs(&db, jobs, members).unwrap_or(jobs);
        let bar = progress_bar(ctx, units.len(), "sweeping");
        let pool = crate::parallel::PoolOptions {
            jobs,
            read_only: false,
            fail_fast: false,
        };
        let by_member = crate::parallel::ByMember {
            member_of: retention::Unit::database,
            limit,
        };
        let results = crate::parallel::for_each_by_member(
            &db,
            &units,
            pool,
            by_member,
            |session, unit| -> anyhow::Result<UnitReport> {
                Ok(retention::sweep_unit(
                    session, &renderer, &plan, options, &stop, unit,
                ))
            },
            |_, _| bar.inc(1),
        );
        bar.finish_and_clear();
        units
            .iter()
            .zip(results)
            .map(|(unit, result)| match result {
                Some(Ok(report)) => report,
                other => {
                    // The worker could not even connect.
                    let mut report = UnitReport::new(unit);
                    report.status = UnitStatus::Failed;
                    report.error = Some(match other {
                        Some(Err(e)) => crate::error::one_line(&e),
                        _ => "not run".into(),
                    });
                    report
                }
            })
            .collect()
    };
    if !in_order.is_empty() {
        let system = usize::from(matches!(units.first(), Some(retention::Unit::System)));
        let mut visited = reports.split_off(system).into_iter();
        reports.extend(
            in_order
                .into_iter()
                .filter_map(|r| r.or_else(|| visited.next())),
        );
    }

    // Policies this run completed over every tenant get their last_run.
    let mut completed = Vec::new();
    if args.all && !args.dry_run {
        completed = retention::completed_policies(&plan, &reports);
        if !completed.is_empty() {
            let mut session = db.connect()?;
            let mut tx = Tx::begin(session.system())?;
            crate::jobs::policy::set_last_run(&mut *tx, &completed, &plan.started)?;
            tx.commit()?;
        }
    }
    report(
        ctx, &args, &plan, &reports, &completed, &stop, &stop_file, started,
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Context,
    args: &RunArgs,
    plan: &Plan,
    reports: &[UnitReport],
    completed: &[String],
    stop: &Stop,
    stop_file: &std::path::Path,
    started: Instant,
) -> anyhow::Result<u8> {
    let who = |r: &UnitReport| r.username.clone().unwrap_or_else(|| "(system)".into());
    let failed: Vec<&UnitReport> = reports
        .iter()
        .filter(|r| r.status == UnitStatus::Failed)
        .collect();
    let sum = |f: fn(&retention::TableReport) -> u64| -> u64 {
        reports.iter().flat_map(|r| &r.tables).map(f).sum()
    };
    let (archived, deleted, rows) = (sum(|t| t.archived), sum(|t| t.deleted), sum(|t| t.rows));
    let stopped = stop.reason();
    let stop_text = |reason: StopReason| match reason {
        StopReason::MaxRuntime => format!(
            "--max-runtime {} reached",
            args.max_runtime
                .map(|d| format!("{}s", d.as_secs_f64()))
                .unwrap_or_default()
        ),
        StopReason::StopFile => format!(
            "the stop file {} exists; remove it before the next run",
            stop_file.display()
        ),
    };
    let in_unit = |s: UnitStatus| reports.iter().filter(|r| r.status == s).count();
    if ctx.json {
        let errors: Vec<serde_json::Value> = failed
            .iter()
            .map(|r| serde_json::json!({"username": r.username, "error": r.error}))
            .collect();
        let (system, tenants): (Vec<&UnitReport>, Vec<&UnitReport>) =
            reports.iter().partition(|r| r.username.is_none());
        let stopped_in: Vec<serde_json::Value> = reports
            .iter()
            .filter(|r| r.status == UnitStatus::Stopped)
            .flat_map(|r| {
                r.tables
                    .iter()
                    .filter(|t| t.rows_left.is_some())
                    .map(move |t| {
                        serde_json::json!({"username": r.username, "table": t.table,
                                       "policy": t.policy, "rows_left": t.rows_left})
                    })
            })
            .collect();
        ctx.print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "started_at": iso_utc(&plan.started),
            "complete": stopped.is_none() && failed.is_empty(),
            "stopped": stopped,
            "policies": plan.policies.iter().map(|p| serde_json::json!({
                "name": p.policy.name,
                "tables": p.targets.iter().map(|t| t.display()).collect::<Vec<_>>(),
                "action": p.policy.action(),
                "age_column": p.policy.age_column,
                "cutoff": iso_utc(&p.cutoff),
                "last_run_set": completed.contains(&p.policy.name),
            })).collect::<Vec<_>>(),
            "tenants": tenants,
            "system_tables": system.first().map(|s| &s.tables),
            "totals": {"rows": rows, "archived": archived, "deleted": deleted},
            "left": {
                "tenants_not_started": in_unit(UnitStatus::NotStarted),
                "stopped_in": stopped_in,
            },
            "failed": errors,
        }));
    } else {
        let mut lines: Vec<[String; 7]> = Vec::new();
        for r in reports {
            for t in &r.tables {
                if t.rows == 0 && t.rows_left.is_none() {
                    continue;
                }
                lines.push([
                    who(r),
                    t.table.clone(),
                    t.policy.clone(),
                    t.action.as_str().into(),
                    t.cutoff.clone(),
                    t.rows.to_string(),
                    t.rows_left.map(|n| n.to_string()).unwrap_or_default(),
                ]);
            }
        }
        // LEFT only when the run stopped inside a table.
        let columns = if lines.iter().any(|l| !l[6].is_empty()) {
            7
        } else {
            6
        };
        if !lines.is_empty() {
            let header = [
                "TENANT",
                "TABLE",
                "POLICY",
                "ACTION",
                "CUTOFF",
                if args.dry_run { "ROWS DUE" } else { "ROWS" },
                "LEFT",
            ];
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    lines
                        .iter()
                        .map(|l| l[i].len())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let fmt = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i >= 5 {
                            format!("{c:>w$}")
                        } else {
                            format!("{c:<w$}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            ctx.say(fmt(header[..columns].to_vec()));
            for l in &lines {
                ctx.say(fmt(l[..columns].iter().map(String::as_str).collect()));
            }
        }
        let tenants = reports.iter().filter(|r| r.username.is_some()).count();
        let system = reports.iter().any(|r| r.username.is_none());
        let scope = format!(
            "{tenants} tenant(s){}",
            if system { " and the system tables" } else { "" }
        );
        if args.dry_run {
            for p in &plan.policies {
                let due: u64 = reports
                    .iter()
                    .flat_map(|r| &r.tables)
                    .filter(|t| t.policy == p.policy.name)
                    .map(|t| t.rows)
                    .sum();
                ctx.say(format!(
                    "policy {}: {due} row(s) to {} (cutoff {})",
                    p.policy.name,
                    p.policy.action().as_str(),
                    iso_utc(&p.cutoff)
                ));
            }
            ctx.say(format!("dry run over {scope}: nothing was changed"));
        } else {
            ctx.say(format!(
                "{rows} row(s) handled in {scope}: {archived} archived, {deleted} deleted, in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            if let Some(reason) = stopped {
                let left: Vec<String> = reports
                    .iter()
                    .flat_map(|r| {
                        r.tables.iter().filter_map(move |t| {
                            t.rows_left.map(|n| format!("{}: {n} row(s) left", t.table))
                        })
                    })
                    .collect();
                ctx.say(format!(
                    "stopped between batches: {}. Tenants: {} done, {} stopped{}, {} not started; run again to finish",
                    stop_text(reason),
                    in_unit(UnitStatus::Done),
                    in_unit(UnitStatus::Stopped),
                    if left.is_empty() { String::new() } else { format!(" ({})", left.join(", ")) },
                    in_unit(UnitStatus::NotStarted),
                ));
            }
        }
    }
    for r in &failed {
        eprintln!(
            "error: {}: {}",
            who(r),
            r.error.as_deref().unwrap_or("failed")
        );
    }
    if failed.is_empty() {
        Ok(0)
    } else if failed.len() < reports.len() {
        let names: Vec<String> = failed.iter().map(|r| who(r)).collect();
        // The system tables' unit counts among the "tenants" only when it failed.
        let system_ok = reports
            .iter()
            .filter(|r| r.username.is_none() && r.status != UnitStatus::Failed)
            .count();
        Err(PartialFailure::new(reports.len() - system_ok, &names).into())
    } else if ctx.json {
        Ok(crate::error::EXIT_ERROR)
    } else {
        Err(anyhow::anyhow!(
            "the sweep failed everywhere: fix the cause and run again"
        ))
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> anyhow::Result<u8> {
    let users = parse_usernames(ctx, std::slice::from_ref(&args.user))?;
    let mut tables = Vec::new();
    for name in &args.tables {
        let name = name.trim();
        let def = crate::schema::tenant::table_def(name).ok_or_else(|| {
            UsageError::new(format!(
                "--table {name:?} is not a tenant table: use one of {}",
                crate::schema::tenant::TENANT_TABLES.join(", ")
            ))
        })?;
        tables.push(def);
    }
    let selection = match &args.archived_since {
        Some(time) => Selection::Since(crate::jobs::archive::timestamp_text(
            time.resolve(time::OffsetDateTime::now_utc()),
        )),
        None => {
            let ids: Vec<String> = args
                .ids
                .iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect();
            if ids.is_empty() {
                return Err(UsageError::new("--ids names no id").into());
            }
            Selection::Ids(ids)
        }
    };
    let (db, renderer) = ctx.open_database_existing()?;
    let mut session = db.connect()?;
    let tenant = select_tenants(ctx, session.system(), &users, false, |_| true)?.remove(0);
    let restored = retention::restore(
        &mut session,
        &renderer,
        &tenant,
        &tables,
        &selection,
        args.batch_size,
    )?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "username": tenant.username,
            "tenant_key": tenant.tenant_key,
            "tables": restored,
            "failed": [],
        }));
    } else {
        for t in &restored {
            ctx.say(format!("restored {} row(s) into {}", t.rows, t.table));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_add_up_and_absurd_ones_are_refused() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("99999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615s1s").is_err());
        assert!(parse_duration("2x").is_err());
    }
}
