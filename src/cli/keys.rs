//! `keys`: users' encryption keys (create, rotate the master key, verify,
//! inventory). The work is in `crate::security::keys`; this file parses and presents.
//! Nothing printed here is key material: master keys appear by id only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Subcommand;

use crate::error::{EXIT_ERROR, PartialFailure, UsageError};
use crate::security::crypto::{Keyring, MasterKey};
use crate::security::keys::{self, EnsureOutcome, EnsureResult, KeyCreation, RotateOptions};

use super::{Context, parse_usernames, progress_bar};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a fresh random master key to a new file (mode 0600) and print its id
    NewMasterKey {
        /// The file to create; an existing file is never overwritten
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Create the encryption keys users are missing (users whose pf_users row
    /// appeared after they were provisioned)
    Ensure(EnsureArgs),
    /// Re-wrap every user's data key under a new master key; the data keys stay
    /// the same. Safe to kill and re-run
    Rotate(RotateArgs),
    /// Keys per master key and algorithm, users without a key, the oldest rotation
    Status(StatusArgs),
    /// Open every data key with the master key(s) given and list those that fail
    Verify(VerifyArgs),
    /// Delete the keys of deprovisioned users (kept by `deprovision --archive` or
    /// `--export`): what they encrypted can never be read again. Asks first
    Shred {
        /// Deprovisioned users whose key to delete
        #[arg(required = true)]
        users: Vec<String>,

        /// Leave erasing the deleted keys' bytes to a later `keys erase` (see
        /// `deprovision --erase-later`)
        #[arg(long)]
        erase_later: bool,
    },
    /// Erase the bytes deleted and re-wrapped keys left in the database's files
    /// (deprovision, `keys shred` and `keys rotate` do it at their end; run it
    /// when one of them was stopped before). PostgreSQL: VACUUM FULL of the key table
    Erase {
        /// Only when a key was deleted or re-wrapped since the last erasure (by the
        /// audit log): the nightly form, which costs nothing on a night without
        /// deprovisioning
        #[arg(long)]
        if_needed: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct EnsureArgs {
    /// Users whose key to create
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every live tenant without a key
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub jobs: super::JobsArg,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// File holding the new master key (create it with `keys new-master-key`)
    #[arg(long, value_name = "FILE")]
    pub new_master_key_file: PathBuf,

    /// Keys re-wrapped per transaction
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch_size: usize,

    /// Connections working in parallel
    #[arg(long, short, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// How many usernames to list per group
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub list_limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Users whose key to verify
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every key
    #[arg(long)]
    pub all: bool,

    /// Also open keys with this master key (e.g. the new one, halfway through a rotation)
    #[arg(long, value_name = "FILE")]
    pub new_master_key_file: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        KeysCommand::NewMasterKey { out } => new_master_key(ctx, &out),
        KeysCommand::Ensure(a) => ensure(ctx, a),
        KeysCommand::Rotate(a) => rotate(ctx, a),
        KeysCommand::Status(a) => status(ctx, a),
        KeysCommand::Verify(a) => verify(ctx, a),
        KeysCommand::Shred { users, erase_later } => shred(ctx, &users, erase_later),
        KeysCommand::Erase { if_needed } => erase(ctx, if_needed),
    }
}

fn new_master_key(ctx: &Context, out: &std::path::Path) -> anyhow::Result<u8> {
    let id = keys::write_new_master_key(out)?;
    if ctx.json {
        ctx.print_json(
            &serde_json::json!({"master_key_id": id, "file": out.display().to_string()}),
        );
    } else if !ctx.quiet {
        println!("{id}");
    }
    if ctx.show_progress() {
        eprintln!(
            "wrote master key {id} to {} (mode 0600): keep a copy where the application's backend can read it",
            out.display()
        );
    }
    Ok(0)
}

fn ensure(ctx: &Context, args: EnsureArgs) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let master = keys::require_master_key(&ctx.config, "keys ensure")?;
    let (db, _renderer) = ctx.open_database_existing()?;
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let targets = {
        let mut session = db.connect()?;
        keys::ensure_targets(session.system(), &wanted, args.all)?
    };
    let bar = progress_bar(ctx, targets.len(), "creating keys");
    let results = crate::parallel::for_each(
        &db,
        &targets,
        jobs,
        false,
        |session, username| keys::ensure_one(session, &master, username),
        |_, _| bar.inc(1),
    );
    bar.finish_and_clear();
    let report: Vec<EnsureResult> = targets
        .iter()
        .zip(results)
        .map(|(username, result)| EnsureResult {
            username: username.clone(),
            outcome: match result {
                Some(Ok(KeyCreation::Created { master_key_id })) => {
                    EnsureOutcome::Created { master_key_id }
                }
                Some(Ok(KeyCreation::Exists)) => EnsureOutcome::Exists,
                Some(Ok(KeyCreation::NoUserRow)) => EnsureOutcome::NoUserRow,
                Some(Ok(KeyCreation::NoMasterKey)) | None => EnsureOutcome::Failed {
                    error: "not attempted".into(),
                },
                Some(Err(e)) => EnsureOutcome::Failed {
                    error: crate::error::one_line(&e),
                },
            },
        })
        .collect();
    let count = |f: fn(&EnsureOutcome) -> bool| report.iter().filter(|r| f(&r.outcome)).count();
    let created = count(|o| matches!(o, EnsureOutcome::Created { .. }));
    let existing = count(|o| matches!(o, EnsureOutcome::Exists));
    let no_user: Vec<&str> = report
        .iter()
        .filter(|r| matches!(r.outcome, EnsureOutcome::NoUserRow))
        .map(|r| r.username.as_str())
        .collect();
    // Named users without a pf_users row did not get what was asked for.
    let mut failed: Vec<serde_json::Value> = Vec::new();
    for r in &report {
        match &r.outcome {
            EnsureOutcome::Failed { error } => {
                failed.push(serde_json::json!({"username": r.username, "error": error}));
            }
            EnsureOutcome::NoUserRow if !args.all => failed.push(serde_json::json!({
                "username": r.username,
                "error": "no pf_users row: the application creates it; run `keys ensure` again then",
            })),
            _ => {}
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "master_key_id": master.id(),
            "created": created,
            "existing": existing,
            "no_user_row": no_user,
            "failed": failed,
            "users": report,
        }));
    } else {
        for f in &failed {
            eprintln!(
                "error: {}: {}",
                f["username"].as_str().unwrap_or(""),
                f["error"].as_str().unwrap_or("")
            );
        }
        ctx.say(format!(
            "created {created} key(s) wrapped by master key {}; {existing} user(s) had one",
            master.id()
        ));
        if !no_user.is_empty() {
            ctx.say(format!(
                "{} tenant(s) have no pf_users row yet, so no key: {} (run `keys ensure` again once the application has created them)",
                no_user.len(),
                shorten(&no_user, 20)
            ));
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else if failed.len() < report.len() {
        let names: Vec<String> = failed
            .iter()
            .map(|f| f["username"].as_str().unwrap_or("").to_string())
            .collect();
        Err(PartialFailure::new(report.len(), &names).into())
    } else {
        Ok(EXIT_ERROR)
    }
}

/// The database for a read-only command, which must not upgrade the system
/// schema: the key columns arrive with system version 3.
fn open_read_only(ctx: &Context) -> anyhow::Result<crate::db::Database> {
    let (db, _renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let applied =
        crate::migrate::engine::applied_versions(session.system(), crate::migrate::SYSTEM_HISTORY)?;
    if !applied
        .iter()
        .any(|(version, _, _)| *version == KEYS_SYSTEM_VERSION)
    {
        return Err(UsageError::new(format!(
            "the system schema of {} has no master_key_id column yet (system version {KEYS_SYSTEM_VERSION}): run `pathfinder-db init` first",
            db.display_url()
        ))
        .into());
    }
    drop(session);
    Ok(db)
}

/// The system schema version that adds `pf_encryption_keys.master_key_id`.
const KEYS_SYSTEM_VERSION: u32 = 3;

/// `a, b, c and 7 more`.
fn shorten(names: &[&str], shown: usize) -> String {
    crate::error::listed(names, shown)
}

fn rotate(ctx: &Context, args: RotateArgs) -> anyhow::Result<u8> {
    if args.batch_size == 0 {
        return Err(UsageError::new("--batch-size must be at least 1").into());
    }
    let new = keys::read_master_key_file(&args.new_master_key_file)?;
    let mut current = Keyring::new();
    if let Some(key) = keys::configured_master_key(&ctx.config)? {
        current.add(key);
    }
    let (db, _renderer) = ctx.open_database_existing()?;
    let jobs = ctx.jobs(&db, Some(args.jobs))?;
    let pending = {
        let mut session = db.connect()?;
        keys::pending_count(session.system(), new.id())?
    };
    let bar = progress_bar(ctx, pending as usize, "re-wrapping keys");
    let started = Instant::now();
    let report = keys::rotate(
        &db,
        &current,
        &new,
        &RotateOptions {
            batch_size: args.batch_size,
            jobs,
        },
        |n| bar.inc(n),
    );
    bar.finish_and_clear();
    let report = report?;
    let seconds = started.elapsed().as_secs_f64();
    let per_second = if seconds > 0.0 {
        report.rotated as f64 / seconds
    } else {
        0.0
    };
    if ctx.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["seconds"] = serde_json::json!((seconds * 1000.0).round() / 1000.0);
        doc["keys_per_second"] = serde_json::json!(per_second.round());
        ctx.print_json(&doc);
    } else {
        for f in &report.failed {
            println!(
                "{} ({}): {}",
                f.username.as_deref().unwrap_or("?"),
                f.user_id,
                f.reason
            );
        }
        if report.rotated == 0 && report.failed.is_empty() && report.changed_concurrently == 0 {
            ctx.say(format!(
                "nothing to rotate: all {} key(s) are wrapped by master key {}",
                report.already_rotated, report.new_master_key_id
            ));
        } else {
            ctx.say(format!(
                "re-wrapped {} key(s) under master key {} in {} batch(es) ({seconds:.1} s, {per_second:.0} keys/s); {} were on it already",
                report.rotated, report.new_master_key_id, report.batches, report.already_rotated
            ));
        }
        if report.changed_concurrently > 0 {
            ctx.say(format!(
                "{} key(s) were changed by another process while this one ran: run `keys rotate` again to check them",
                report.changed_concurrently
            ));
        }
        if report.unknown_format > 0 {
            ctx.say(format!(
                "{} key(s) name no master key (not written by pathfinder-db) and were left alone: `keys verify --all` lists them",
                report.unknown_format
            ));
        }
    }
    if report.failed.is_empty() {
        Ok(0)
    } else {
        let total = report.rotated as usize + report.failed.len();
        Err(
            anyhow::Error::new(keys::partial_failure(total, &report.failed)).context(format!(
                "{} key(s) did not open and stay wrapped by their old master key",
                report.failed.len()
            )),
        )
    }
}

fn status(ctx: &Context, args: StatusArgs) -> anyhow::Result<u8> {
    let configured = keys::configured_master_key(&ctx.config)?;
    let db = open_read_only(ctx)?;
    let mut session = db.connect_read_only()?;
    let status = keys::status(session.system(), args.list_limit)?;
    let configured_id = configured.as_ref().map(|k| k.id().to_string());
    if ctx.json {
        let mut doc = serde_json::to_value(&status)?;
        doc["configured_master_key_id"] = serde_json::json!(configured_id);
        ctx.print_json(&doc);
        return Ok(0);
    }
    ctx.say(format!("{} encryption key(s)", status.keys));
    for m in &status.by_master_key {
        let id = m.master_key_id.as_deref().unwrap_or("(unreadable)");
        let mark = if m.master_key_id.is_some() && m.master_key_id == configured_id {
            " (configured)"
        } else {
            ""
        };
        ctx.say(format!(
            "  master key {id:<16}{mark} {:>9} key(s), {} never rotated{}",
            m.keys,
            m.never_rotated,
            m.oldest_last_rotated
                .as_deref()
                .map(|t| format!(", oldest rotation {t}"))
                .unwrap_or_default()
        ));
    }
    for f in &status.by_format {
        ctx.say(format!("  format {:<20} {:>9} key(s)", f.format, f.keys));
    }
    for a in &status.by_algorithm {
        ctx.say(format!(
            "  algorithm {:<17} {:>9} key(s)",
            a.algorithm.as_deref().unwrap_or("(none)"),
            a.keys
        ));
    }
    ctx.say(format!(
        "oldest last_rotated: {}; never rotated: {}",
        status.oldest_last_rotated.as_deref().unwrap_or("never"),
        status.never_rotated
    ));
    if status.column_mismatch > 0 {
        ctx.say(format!(
            "{} key(s) have a master_key_id column that is not the master key their stored text names (counted above by the text): `pathfinder-db keys verify --all` lists them; retire no master key until this is 0",
            status.column_mismatch
        ));
    }
    if let Some(id) = &configured_id
        && !status
            .by_master_key
            .iter()
            .any(|m| m.master_key_id.as_deref() == Some(id))
    {
        ctx.say(format!(
            "configured master key {id} wraps none of these keys (none made with it yet, or rotated away from it)"
        ));
    }
    let names = |list: &keys::UserList| {
        let shown: Vec<&str> = list.usernames.iter().map(String::as_str).collect();
        let more = list.count as usize - shown.len();
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    if status.without_key.count > 0 {
        ctx.say(format!(
            "live tenants without a key: {} ({}): `pathfinder-db keys ensure --all` creates them",
            status.without_key.count,
            names(&status.without_key)
        ));
    }
    if status.without_user_row.count > 0 {
        ctx.say(format!(
            "live tenants without a pf_users row (no key possible yet): {} ({})",
            status.without_user_row.count,
            names(&status.without_user_row)
        ));
    }
    Ok(0)
}

fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let mut keyring = Keyring::new();
    if let Some(key) = keys::configured_master_key(&ctx.config)? {
        keyring.add(key);
    }
    if let Some(file) = &args.new_master_key_file {
        keyring.add(keys::read_master_key_file(file)?);
    }
    if keyring.is_empty() {
        return Err(UsageError::new(format!(
            "`keys verify` needs the master key: {}",
            keys::MASTER_KEY_HINT
        ))
        .into());
    }
    let db = open_read_only(ctx)?;
    let mut session = db.connect_read_only()?;
    let bar = if args.all {
        let total = keys::status(session.system(), 0)?.keys;
        progress_bar(ctx, total as usize, "verifying keys")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = keys::verify(
        session.system(),
        &keyring,
        (!args.all).then_some(wanted.as_slice()),
        |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    let ids: Vec<String> = keyring.ids().iter().map(|i| i.to_string()).collect();
    if ctx.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["master_key_ids"] = serde_json::json!(ids);
        ctx.print_json(&doc);
    } else {
        for f in &report.failed {
            println!(
                "{} ({}): {}",
                f.username.as_deref().unwrap_or("?"),
                f.user_id,
                f.reason
            );
        }
        ctx.say(format!(
            "{} key(s) checked with master key(s) {}: {} open, {} failed",
            report.checked,
            ids.join(", "),
            report.ok,
            report.failed.len()
        ));
    }
    Ok(if report.failed.is_empty() {
        0
    } else {
        EXIT_ERROR
    })
}

fn shred(ctx: &Context, users: &[String], erase_later: bool) -> anyhow::Result<u8> {
    let users = parse_usernames(ctx, users)?;
    let (db, _renderer) = ctx.open_database_existing()?;
    let names = users
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ctx.confirm(&format!(
        "Delete the encryption keys of {names} from {}? Whatever they encrypted (archives, exports, backups) can never be read again",
        db.display_url()
    ))?;
    let mut session = db.connect()?;
    let deleted = keys::shred_deprovisioned(&mut session, &users)?;
    drop(session);
    let deleted_any = deleted.iter().any(|(_, n)| *n > 0);
    if deleted_any && erase_later {
        erasure_left_for_later(ctx);
    } else if deleted_any {
        keys::erase_deleted_keys(&db)?;
    }
    if ctx.json {
        let list: Vec<_> = deleted
            .iter()
            .map(|(u, n)| serde_json::json!({"username": u, "keys_deleted": n}))
            .collect();
        let mut doc = serde_json::json!({"users": list, "failed": []});
        if deleted_any && erase_later {
            doc["erase"] = "later".into();
        }
        ctx.print_json(&doc);
    } else {
        for (user, n) in &deleted {
            if *n == 0 {
                ctx.say(format!("{user} has no key: nothing to do"));
            } else {
                ctx.say(format!("deleted the encryption key of {user}"));
            }
        }
    }
    Ok(0)
}

/// `--erase-later`: the deleted keys are gone from the table, their bytes
/// stay in the files until `keys erase` (said on stderr; `--json` says
/// `"erase": "later"`).
pub fn erasure_left_for_later(ctx: &Context) {
    if !ctx.quiet && !ctx.json {
        eprintln!(
            "note: the deleted keys' bytes stay in the database's files until `pathfinder-db keys erase` runs (--erase-later)"
        );
    }
}

fn erase(ctx: &Context, if_needed: bool) -> anyhow::Result<u8> {
    let (db, _renderer) = ctx.open_database_existing()?;
    if if_needed && keys::pending_erasure(db.connect_read_only()?.system())?.is_none() {
        if ctx.json {
            ctx.print_json(&serde_json::json!({ "erased": null, "needed": false }));
        } else {
            ctx.say("no key was deleted or re-wrapped since the last erasure: nothing to erase");
        }
        return Ok(0);
    }
    let erasure = keys::erase_deleted_keys(&db)?;
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&erasure)?);
    } else {
        match &erasure.erased {
            Some(what) => ctx.say(format!("erased: {what}")),
            None => ctx.say(
                "nothing to do on this database beyond the commit: deleted rows stay in their blocks until the space is reused, and in undo and redo (see docs/key-format.md, Erasure)",
            ),
        }
    }
    Ok(0)
}

/// The master key `provision` wraps new users' keys with, if one is configured.
pub fn provision_master_key(ctx: &Context) -> anyhow::Result<Option<Arc<MasterKey>>> {
    Ok(keys::configured_master_key(&ctx.config)?.map(Arc::new))
}

/// After provisioning: says on stderr which users got no key and how to make it.
pub fn provision_key_notes(
    ctx: &Context,
    db: &crate::db::Database,
    usernames: &[&str],
    master: Option<&MasterKey>,
) -> anyhow::Result<()> {
    if ctx.quiet || usernames.is_empty() {
        return Ok(());
    }
    let mut session = db.connect()?;
    let presence = keys::key_presence(session.system(), usernames)?;
    let missing: Vec<&str> = presence
        .iter()
        .filter(|(_, p)| *p == Some(false))
        .map(|(u, _)| u.as_str())
        .collect();
    let no_row: Vec<&str> = presence
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(u, _)| u.as_str())
        .collect();
    if master.is_none() && !missing.is_empty() {
        eprintln!(
            "warning: no master key is configured, so no encryption key was created for {}: {}; then run `pathfinder-db keys ensure --all`",
            shorten(&missing, 10),
            keys::MASTER_KEY_HINT
        );
    }
    if master.is_some() && !no_row.is_empty() {
        eprintln!(
            "note: no pf_users row for {}, so no encryption key yet: run `pathfinder-db keys ensure --all` once the application has created the user(s)",
            shorten(&no_row, 10)
        );
    }
    Ok(())
}
