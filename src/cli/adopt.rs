use crate::error::{PartialFailure, UsageError};
use crate::schema::tenant::{TenantKey, Username};
use crate::tenants::adopt::{self, Adoption, Expectations, Options, Refused};

use super::{Context, parse_usernames};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users whose tables exist but who are not registered (their tables carry
    /// the username, or the --tenant-key)
    #[arg(required_unless_present = "scan", conflicts_with = "scan")]
    pub users: Vec<String>,

    /// Find them: every user whose nine tables exist and who is not registered
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
    let (db, renderer) = if args.dry_run {
        ctx.open_database_read_only()?
    } else {
        ctx.open_database_existing()?
    };
    let mut session = if args.dry_run {
        db.connect_read_only()?
    } else {
        db.connect()?
    };
    let expectations = Expectations::new(ctx.config.templates_dir.as_deref(), dialect)?;

    // Candidates found by --scan whose key is no usable name are refused by name.
    let mut candidates: Vec<Result<(Username, TenantKey), (String, anyhow::Error)>> =
        named.into_iter().map(Ok).collect();
    if args.scan {
        for key in adopt::scan(&mut session)? {
            candidates.push(
                Username::parse(&key)
                    .map_err(|e| e.usage(Some(dialect)).into())
                    .and_then(|u| {
                        TenantKey::parse(&key, dialect)
                            .map(|k| (u, k))
                            .map_err(anyhow::Error::from)
                    })
                    .map_err(|e| (key.clone(), e)),
            );
        }
        if candidates.is_empty() {
            if ctx.json {
                ctx.print_json(
                    &serde_json::json!({"tenants": [], "failed": [], "dry_run": args.dry_run}),
                );
            } else {
                ctx.say(
                    "no tenants to adopt: every set of tenant tables in the catalog is registered",
                );
            }
            return Ok(0);
        }
    }

    let options = Options {
        dry_run: args.dry_run,
        repair: args.repair,
    };
    let total = candidates.len();
    let mut done: Vec<Adoption> = Vec::new();
    let mut failed: Vec<(String, anyhow::Error)> = Vec::new();
    for candidate in candidates {
        match candidate {
            Ok((user, key)) => {
                match adopt::adopt(&mut session, &renderer, &expectations, &user, &key, options) {
                    Ok(a) => {
                        report(ctx, &a);
                        done.push(a);
                    }
                    Err(e) => failed.push((user.to_string(), e)),
                }
            }
            Err(refused) => failed.push(refused),
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "tenants": done,
            "failed": failed.iter().map(|(user, e)| serde_json::json!({
                "username": user,
                "error": crate::error::one_line(e),
                "drift": e.downcast_ref::<Refused>().map(|r| r.drift.clone()).unwrap_or_default(),
            })).collect::<Vec<_>>(),
        }));
    }
    if failed.len() == 1 && total == 1 && !ctx.json {
        let (user, e) = failed.remove(0);
        return Err(e.context(format!("cannot adopt {user}")));
    }
    for (user, e) in &failed {
        if !ctx.json {
            eprintln!("error: {user}: {}", crate::error::one_line(e));
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else if !done.is_empty() {
        let names: Vec<String> = failed.into_iter().map(|(u, _)| u).collect();
        Err(PartialFailure::new(total, &names).into())
    } else {
        Ok(crate::error::EXIT_ERROR)
    }
}

fn report(ctx: &Context, a: &Adoption) {
    let verb = if a.dry_run { "would adopt" } else { "adopted" };
    let mut line = format!("{verb} {} at version {}", a.username, a.version);
    if a.tenant_key != a.username {
        line.push_str(&format!(" (tenant key {})", a.tenant_key));
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
