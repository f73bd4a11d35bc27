use std::path::PathBuf;

use clap::Subcommand;

use crate::db::Tx;
use crate::error::UsageError;
use crate::jobs::policy::{self, Change, Policy, Stored};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Sync policies/*.toml into pf_data_retention_policies (insert, update, remove) and print the difference
    Apply(ApplyArgs),
    /// Show the policies in force: tables (and what each pattern resolves to), age column, days, action, last run
    List,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Print the difference, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// The policies directory [default: policies_dir from the configuration, else ./policies]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// With no policy file in DIR, remove every policy in force (otherwise refused)
    #[arg(long)]
    pub allow_empty: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        Sub::Apply(a) => apply(ctx, a),
        Sub::List => list(ctx),
    }
}

fn describe(p: &Policy) -> String {
    let what = match p.action() {
        crate::jobs::archive::Action::Move => "moved to the archive",
        crate::jobs::archive::Action::Delete => "deleted",
        crate::jobs::archive::Action::Copy => "copied to the archive",
    };
    format!(
        "{}: rows {what} {} day(s) after {}",
        p.table_pattern(),
        p.retention_days,
        p.age_column
    )
}

fn apply(ctx: &Context, args: ApplyArgs) -> anyhow::Result<u8> {
    let dir = args.dir.unwrap_or_else(|| ctx.config.policies_dir.clone());
    // Every file is checked before the database is touched.
    let files = policy::load_dir(&dir)?;
    // A wrong --dir (or an empty deploy) would end every retention policy.
    let refuse_empty = |stored: usize| -> anyhow::Result<()> {
        if files.is_empty() && stored > 0 && !args.allow_empty {
            return Err(UsageError::new(format!(
                "{} has no policy files (*.toml): applying it would remove the {stored} policies in force; check --dir, or give --allow-empty to remove them all",
                dir.display()
            ))
            .into());
        }
        Ok(())
    };
    let changes = if args.dry_run {
        let stored = stored_if_any(ctx)?;
        refuse_empty(stored.len())?;
        policy::diff(&stored, &files)
    } else {
        // The policy table's columns come with system version 4: like every
        // command but init, provision and migrate, apply creates nothing and
        // says to run init on an older or missing system schema.
        let (db, _) = ctx.open_database_existing()?;
        let mut session = db.connect()?;
        let mut tx = Tx::begin(session.system())?;
        let stored = policy::stored(&mut *tx)?;
        refuse_empty(stored.len())?;
        let changes = policy::diff(&stored, &files);
        policy::apply(&mut *tx, &changes)?;
        tx.commit()?;
        changes
    };
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "directory": dir.display().to_string(),
            "policies": files.len(),
            "changes": changes,
        }));
        return Ok(0);
    }
    for change in &changes {
        match change {
            Change::Insert { policy } => {
                ctx.say(format!("+ {}: {}", policy.name, describe(policy)))
            }
            Change::Update { policy, fields, .. } => {
                let what: Vec<String> = fields
                    .iter()
                    .map(|(field, [was, now])| format!("{field} {was} -> {now}"))
                    .collect();
                ctx.say(format!("~ {}: {}", policy.name, what.join(", ")));
            }
            Change::Remove { name, tables, .. } => {
                let name = if name.is_empty() { "(unnamed)" } else { name };
                ctx.say(format!("- {name}: {tables}"));
            }
        }
    }
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let (added, changed, removed) = (
        count(|c| matches!(c, Change::Insert { .. })),
        count(|c| matches!(c, Change::Update { .. })),
        count(|c| matches!(c, Change::Remove { .. })),
    );
    if changes.is_empty() {
        ctx.say(format!(
            "the {} policies in force are what {} says: nothing to change",
            files.len(),
            dir.display()
        ));
    } else {
        ctx.say(format!(
            "{}{added} added, {changed} changed, {removed} removed ({} policies from {})",
            if args.dry_run {
                "dry run, nothing written: "
            } else {
                ""
            },
            files.len(),
            dir.display()
        ));
    }
    Ok(0)
}

/// The stored policies for a dry run, which creates nothing: none when the
/// database or its policy columns (system version 4) are not there yet.
fn stored_if_any(ctx: &Context) -> anyhow::Result<Vec<Stored>> {
    let Ok((db, renderer)) = ctx.open_database_read_only() else {
        ctx.note("the database has no system schema yet: every policy would be added");
        return Ok(Vec::new());
    };
    let mut session = db.connect_read_only()?;
    if !crate::migrate::system_is_current(session.system(), &renderer)? {
        ctx.note("the system schema is older than this pathfinder-db: apply upgrades it");
        return Ok(Vec::new());
    }
    Ok(policy::stored(session.system())?)
}

fn list(ctx: &Context) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    if !crate::migrate::system_is_current(session.system(), &renderer)? {
        return Err(crate::error::UsageError::new(format!(
            "the system schema of {} is older than this pathfinder-db: run `pathfinder-db policies apply` (or init) to upgrade it",
            db.display_url()
        ))
        .into());
    }
    let stored = policy::stored(session.system())?;
    // A hint when the files say something else than the table.
    if let Ok(files) = policy::load_dir(&ctx.config.policies_dir)
        && !policy::diff(&stored, &files).is_empty()
    {
        ctx.note(format!(
            "note: {} differs from the policies in force: `pathfinder-db policies apply` syncs it",
            ctx.config.policies_dir.display()
        ));
    }
    let resolves =
        |s: &Stored| -> Vec<String> { s.policy.targets().iter().map(|t| t.display()).collect() };
    if ctx.json {
        let policies: Vec<serde_json::Value> = stored
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["action"] = s.policy.action().as_str().into();
                v["resolves_to"] = resolves(s).into();
                v
            })
            .collect();
        ctx.print_json(&serde_json::json!({ "policies": policies }));
        return Ok(0);
    }
    if stored.is_empty() {
        ctx.say(format!(
            "no policy in force: put policy files in {}/ and run `pathfinder-db policies apply`",
            ctx.config.policies_dir.display()
        ));
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = stored
        .iter()
        .map(|s| {
            [
                if s.policy.name.is_empty() {
                    "(unnamed)".into()
                } else {
                    s.policy.name.clone()
                },
                resolves(s).join(", "),
                s.policy.age_column.clone(),
                s.policy.retention_days.to_string(),
                s.policy.action().as_str().into(),
                s.last_run.clone().unwrap_or_else(|| "never".into()),
                s.policy.source.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "TABLES",
        "AGE COLUMN",
        "DAYS",
        "ACTION",
        "LAST RUN",
        "SOURCE",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 3 {
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
    ctx.say(line(header.to_vec()));
    for r in &rows {
        ctx.say(line(r.iter().map(String::as_str).collect()));
    }
    Ok(0)
}
