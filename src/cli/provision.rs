use std::path::PathBuf;

use crate::error::{PartialFailure, UsageError};
use crate::tenants::provision::{
    NameCheck, ProvisionOutcome, ProvisionRequest, check_request, provision,
};

use super::{Context, parse_usernames, progress_bar, read_names_file};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to provision
    #[arg(required_unless_present = "from_file")]
    pub users: Vec<String>,

    /// Read usernames from a file, one per line
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,

    /// Explicit tenant key naming the user's tables (for a name too long for the
    /// dialect); only with a single user
    #[arg(long, value_name = "KEY")]
    pub tenant_key: Option<String>,

    #[command(flatten)]
    pub jobs: super::JobsArg,

    /// Create the tenants at this schema version instead of the latest
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u32>,

    /// A user deprovisioned with --archive is back: the new tenant takes up the
    /// kept archives (refused without it unless the pf_users id is the same)
    #[arg(long)]
    pub take_archives: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let mut names = args.users.clone();
    if let Some(file) = &args.from_file {
        names.extend(read_names_file(file)?);
    }
    let users = parse_usernames(ctx, &names)?;
    if users.is_empty() {
        return Err(UsageError::new("no usernames given").into());
    }
    if args.tenant_key.is_some() && users.len() != 1 {
        return Err(UsageError::new(
            "--tenant-key names one user's tables: give exactly one user with it",
        )
        .into());
    }
    let dialect = ctx.config.database_dialect()?;
    // [keys] The master key that wraps new users' encryption keys (None: no key).
    let master_key = super::keys::provision_master_key(ctx)?;
    let requests: Vec<ProvisionRequest> = users
        .into_iter()
        .map(|username| ProvisionRequest {
            username,
            tenant_key: args.tenant_key.clone(),
            target_version: args.to,
            master_key: master_key.clone(),
            database: ctx.database.clone(),
            take_archives: args.take_archives,
        })
        .collect();
    // Names are checked before anything is touched; a name too long for the
    // dialect is fine only if the registry already holds a key for it.
    let mut need_key = Vec::new();
    for req in &requests {
        match check_request(req, dialect) {
            Ok(()) => {}
            Err(NameCheck::Invalid(e)) => return Err(e.into()),
            Err(NameCheck::NeedsRegisteredKey(e)) => need_key.push((req.username.clone(), e)),
        }
    }

    if !need_key.is_empty() {
        // Read-only: a database without a system schema has no registered keys,
        // and is not created just to refuse a name.
        let (db, _) = ctx
            .open_database_read_only()
            .map_err(|_| need_key[0].1.clone())?;
        let mut session = db.connect_read_only()?;
        for (user, err) in need_key {
            let registered = crate::catalog::registry::get(session.system(), user.as_str())?
                .is_some_and(|r| r.status != crate::catalog::registry::Status::Deprovisioned);
            if !registered {
                return Err(err.into());
            }
        }
    }
    let (db, renderer) = ctx.open_database()?;
    let latest = renderer.latest_version(crate::schema::render::Scope::Tenant);
    if let Some(to) = args.to.filter(|&v| v == 0 || v > latest) {
        return Err(UsageError::new(format!(
            "there is no tenant version {to}: versions are 1 to {latest}"
        ))
        .into());
    }
    let jobs = ctx.jobs(&db, args.jobs.jobs)?;
    let bar = progress_bar(ctx, requests.len(), "provisioning");
    let results = crate::parallel::for_each(
        &db,
        &requests,
        jobs,
        false,
        |session, req| provision(session, &renderer, req),
        |_, _| bar.inc(1),
    );
    bar.finish_and_clear();

    // Where SQLite tenants' files went, when a fleet spreads them over
    // folders. A read-write session: a read-only one closing last would
    // leave the -wal file behind.
    let mut where_session = (dialect == crate::db::dialect::Dialect::Sqlite)
        .then(|| db.connect().ok())
        .flatten()
        .and_then(|mut s| s.has_members().ok().filter(|m| *m).map(|_| s));
    let mut created = 0;
    let mut existing = 0;
    let mut by_others = 0;
    let mut failed: Vec<String> = Vec::new();
    let mut report = Vec::new();
    for (req, result) in requests.iter().zip(results) {
        let user = req.username.as_str();
        match result {
            Some(Ok(outcome)) => {
                let key_note = if outcome.tenant_key() != user {
                    format!(" (tenant key {})", outcome.tenant_key())
                } else {
                    String::new()
                };
                let key = crate::schema::tenant::TenantKey::parse(outcome.tenant_key(), dialect)?;
                let location = match where_session.as_mut() {
                    Some(s) => s.tenant_file(&key).ok().flatten(),
                    None => db.sqlite_tenant_file(&key),
                }
                .map(|f| format!(" in {}", f.display()))
                .unwrap_or_default();
                match &outcome {
                    ProvisionOutcome::Created { version, .. } => {
                        created += 1;
                        if requests.len() <= 20 {
                            ctx.say(format!(
                                "provisioned {user}{key_note}: 9 tables, {} indexes and career_summary at version {version}{location}",
                                renderer.tenant_index_count(*version)
                            ));
                        }
                    }
                    ProvisionOutcome::Exists {
                        version,
                        by_another_run,
                        database,
                        ..
                    } => {
                        existing += 1;
                        by_others += usize::from(*by_another_run);
                        let elsewhere = ctx.database.as_deref().filter(|asked| asked != database);
                        if let Some(asked) = elsewhere {
                            // Asked for another member: say where it is.
                            ctx.say(format!("{user} already exists{key_note} at version {version} on member {database}, not {asked}: nothing done (`pathfinder-db move {user} --to {asked}` moves it)"));
                        } else if requests.len() > 20 {
                        } else if *by_another_run {
                            ctx.say(format!("{user} was provisioned by another run meanwhile{key_note}, at version {version}: nothing to do"));
                        } else {
                            ctx.say(format!("{user} already exists{key_note} at version {version}: nothing to do"));
                        }
                    }
                }
                let mut entry = serde_json::to_value(&outcome)?;
                entry["username"] = user.into();
                report.push(entry);
            }
            Some(Err(err)) => {
                let message = crate::error::one_line(&err);
                if requests.len() == 1 && !ctx.json {
                    // One user: the error itself is the result (its exit code too).
                    return Err(err.context(format!("cannot provision {user}")));
                }
                eprintln!("error: {user}: {message}");
                failed.push(user.to_string());
                report.push(
                    serde_json::json!({"username": user, "outcome": "failed", "error": message}),
                );
            }
            None => {}
        }
    }
    // [keys] Says on stderr who got no encryption key, and how to create it.
    let done: Vec<&str> = requests
        .iter()
        .map(|r| r.username.as_str())
        .filter(|u| !failed.iter().any(|f| f == u))
        .collect();
    let _ = super::keys::provision_key_notes(ctx, &db, &done, master_key.as_deref());
    if ctx.json {
        // On a fleet each tenant says where it was placed (one registry read).
        if let Ok(mut session) = db.connect()
            && session.has_members().unwrap_or(false)
            && let Ok(all) = crate::catalog::registry::list(session.system(), false)
        {
            let placed: std::collections::HashMap<&str, &str> = all
                .iter()
                .map(|t| (t.username.as_str(), t.database.as_str()))
                .collect();
            for entry in report.iter_mut() {
                if let Some(member) = entry["username"].as_str().and_then(|u| placed.get(u)) {
                    entry["database"] = (*member).into();
                }
            }
        }
        ctx.print_json(&serde_json::json!({
            "created": created,
            "existing": existing,
            "by_another_run": by_others,
            "failed": report.iter().filter(|t| t["outcome"] == "failed").cloned().collect::<Vec<_>>(),
            "tenants": report,
        }));
    } else if requests.len() > 1 {
        let others = if by_others > 0 {
            format!(" ({by_others} provisioned by another run meanwhile)")
        } else {
            String::new()
        };
        ctx.say(format!(
            "{created} provisioned, {existing} already existed{others}, {} failed",
            failed.len()
        ));
    }
    if failed.is_empty() {
        Ok(0)
    } else if failed.len() < requests.len() {
        Err(PartialFailure::new(requests.len(), &failed).into())
    } else if requests.len() == 1 {
        Ok(crate::error::EXIT_ERROR)
    } else {
        Err(anyhow::anyhow!("all {} tenants failed", requests.len()))
    }
}
