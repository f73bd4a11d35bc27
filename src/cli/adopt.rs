use std::collections::BTreeMap;

use crate::error::{PartialFailure, UsageError};
use crate::fleet::members::CATALOG;
use crate::schema::tenant::{TenantKey, Username};
use crate::tenants::adopt::{self, Adoption, Expectations, Options, Refused};

use super::{Context, parse_usernames};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users whose tables exist but who are not registered (their tables carry
    /// the username, or the --tenant-key)
    #[arg(required_unless_present = "scan", conflicts_with = "scan")]
    pub users: Vec<String>,

    /// Find them: every user whose nine tables exist and who is not registered,
    /// on the catalog and every member database (or the one --database names)
    #[arg(long)]
    pub scan: bool,

    /// Say what would be adopted at which version, changing nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Create the missing tenant-named indexes and career summary (tables made
    /// by the seed's script lack them), so the tenant ends exactly at its version
    #[arg(long)]
    pub repair: bool,

    /// The key the user's tables carry (`pf_user_<KEY>_...`), for one user whose
    /// name does not fit the dialect
    #[arg(long, value_name = "KEY", conflicts_with = "scan")]
    pub tenant_key: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let dialect = ctx.config.database_dialect()?;
    let users = parse_usernames(ctx, &args.users)?;
    if args.tenant_key.is_some() && users.len() != 1 {
        return Err(UsageError::new(
            "--tenant-key names one user's tables: give exactly one user with it",
        )
        .into());
    }
    // Names are checked before the database is touched.
    let mut named: Vec<(Username, TenantKey)> = Vec::new();
    for user in users {
        let key = match &args.tenant_key {
            Some(k) => TenantKey::parse(k, dialect)?,
            None => TenantKey::for_username(&user, dialect)?,
        };
        named.push((user, key));
    }
    let (db, renderer) = ctx.open_for(args.dry_run)?;
    let mut session = db.connect_as(args.dry_run)?;
    // `--database NAME`: the member holding the named users' tables, or the
    // one member `--scan` reads.
    let database = ctx.member_filter(session.system())?;
    let expectations = Expectations::new(ctx.config.templates_dir.as_deref(), dialect)?;

    // A candidate: the user, the key, and the database its tables are on
    // (None: the named user's `--database`, or found by `adopt`). Candidates
    // found by --scan whose key is no usable name are refused by name.
    let mut candidates: Vec<(Username, TenantKey, Option<String>)> = named
        .into_iter()
        .map(|(u, k)| (u, k, database.clone()))
        .collect();
    let mut failed: Vec<Failed> = Vec::new();
    let mut unreachable: Vec<(String, String)> = Vec::new();
    if args.scan {
        let scan = adopt::scan(&mut session, database.as_deref())?;
        // The same tables on two databases: which copy is the tenant is the
        // DBA's call.
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (db, key) in scan.found {
            by_key.entry(key).or_default().push(db);
        }
        for (key, mut dbs) in by_key {
            if dbs.len() > 1 {
                failed.push(Failed {
                    username: key.clone(),
                    database: None,
                    error: UsageError::new(format!(
                        "tables pf_user_{key}_* are on more than one member database ({}): name the one to adopt with `pathfinder-db --database NAME adopt {key}`",
                        dbs.join(", ")
                    ))
                    .into(),
                });
                continue;
            }
            let db = dbs.remove(0);
            let parsed = Username::parse(&key)
                .map_err(|e| e.usage(Some(dialect)).into())
                .and_then(|u| {
                    TenantKey::parse(&key, dialect)
                        .map(|k| (u, k))
                        .map_err(anyhow::Error::from)
                });
            match parsed {
                Ok((u, k)) => candidates.push((u, k, Some(db))),
                Err(error) => failed.push(Failed {
                    username: key,
                    database: Some(db),
                    error,
                }),
            }
        }
        for (member, key, path) in scan.files {
            failed.push(Failed {
                error: anyhow::anyhow!(
                    "tenant file {} (member {member}) is not registered, and adopt does not take tenant files (they carry their database's owner record): attach its tables to the main file and run adopt again, or move the file away",
                    path.display()
                ),
                username: key,
                database: Some(member),
            });
        }
        unreachable = scan.unreadable;
        if candidates.is_empty() && failed.is_empty() && unreachable.is_empty() {
            if ctx.json {
                ctx.print_json(
                    &serde_json::json!({"tenants": [], "failed": [], "dry_run": args.dry_run}),
                );
            } else {
                let place = match &database {
                    Some(m) if m != CATALOG => format!("on member {m}"),
                    _ if session.has_members()? => "in the catalog and its members".to_string(),
                    _ => "in the catalog".to_string(),
                };
                ctx.say(format!(
                    "no tenants to adopt: every set of tenant tables {place} is registered"
                ));
            }
            return Ok(0);
        }
    }

    let total = candidates.len() + failed.len() + unreachable.len();
    let mut done: Vec<Adoption> = Vec::new();
    for (user, key, db) in candidates {
        let options = Options {
            dry_run: args.dry_run,
            repair: args.repair,
            database: db.as_deref(),
        };
        match adopt::adopt(&mut session, &renderer, &expectations, &user, &key, options) {
            Ok(a) => {
                report(ctx, &a);
                done.push(a);
            }
            Err(error) => failed.push(Failed {
                username: user.to_string(),
                database: db,
                error,
            }),
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "tenants": done,
            "failed": failed.iter().map(|f| {
                let mut entry = serde_json::json!({
                    "username": f.username,
                    "error": crate::error::one_line(&f.error),
                    "drift": f.error.downcast_ref::<Refused>().map(|r| r.drift.clone()).unwrap_or_default(),
                });
                if let Some(db) = &f.database {
                    entry["database"] = serde_json::json!(db);
                }
                entry
            }).collect::<Vec<_>>(),
            "unreachable": unreachable.iter().map(|(db, error)| serde_json::json!({
                "database": db,
                "error": error,
            })).collect::<Vec<_>>(),
        }));
    }
    if failed.len() == 1 && total == 1 && !ctx.json {
        let f = failed.remove(0);
        return Err(f.error.context(format!("cannot adopt {}", f.username)));
    }
    if !ctx.json {
        for f in &failed {
            eprintln!(
                "error: {}: {}",
                f.username,
                crate::error::one_line(&f.error)
            );
        }
        for (_, error) in &unreachable {
            eprintln!(
                "error: {error}: the tenants there could not be looked for; run `pathfinder-db adopt --scan` again when it can be read"
            );
        }
    }
    if failed.is_empty() && unreachable.is_empty() {
        Ok(0)
    } else if !done.is_empty() || failed.is_empty() {
        // Some adopted (or nothing refused) while others failed or could not
        // be looked for: partial, like every fleet-wide command.
        let names: Vec<String> = failed
            .into_iter()
            .map(|f| f.username)
            .chain(
                unreachable
                    .into_iter()
                    .map(|(db, _)| format!("member {db}")),
            )
            .collect();
        Err(PartialFailure::new(total, &names).into())
    } else {
        Ok(crate::error::EXIT_ERROR)
    }
}

/// A candidate that was not adopted, and the database its tables are on
/// when known.
struct Failed {
    username: String,
    database: Option<String>,
    error: anyhow::Error,
}

fn report(ctx: &Context, a: &Adoption) {
    if a.already {
        ctx.say(format!(
            "{} is registered already (tenant {}, active, version {}): nothing to do",
            a.username, a.tenant_key, a.version
        ));
        return;
    }
    let verb = if a.dry_run { "would adopt" } else { "adopted" };
    let mut line = format!("{verb} {} at version {}", a.username, a.version);
    if a.tenant_key != a.username {
        line.push_str(&format!(" (tenant key {})", a.tenant_key));
    }
    match a.database.as_deref() {
        Some(CATALOG) => line.push_str(" on the catalog"),
        Some(member) => line.push_str(&format!(" on member {member}")),
        None => {}
    }
    if let Some(file) = &a.moved_to {
        line.push_str(&format!(
            "; {} its tables into {file}",
            if a.dry_run { "would move" } else { "moved" }
        ));
    }
    if !a.created.is_empty() {
        line.push_str(&format!(
            "; {} {}",
            if a.dry_run {
                "--repair would create"
            } else {
                "created"
            },
            a.created.join(", ")
        ));
    }
    if !a.kept_indexes.is_empty() {
        line.push_str(&format!(
            "; kept the indexes not named after the tenant ({}): drop them once nothing uses them by name",
            a.kept_indexes.join(", ")
        ));
    }
    ctx.say(line);
}
