//! `doctor`: a preflight check of the configured database, one line per check
//! with what was found and, when it fails, the fix. Reads only: nothing is
//! created, not even a missing database.
//!
//! Checks: the Oracle client library and `TNS_ADMIN` wallet (Oracle), that
//! the database can be reached, the backend's own checks (server version,
//! Oracle's COMPATIBLE, the privileges pathfinder-db needs, quota; see
//! [`crate::db::Connection::preflight`]), the system schema version, tenants
//! stuck half-way or failed, registry rows whose tables are missing and
//! tenant tables that no registry row owns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::catalog::registry::{self, Status, TenantRecord};
use crate::config::Config;
use crate::db::dialect::Dialect;
use crate::db::{Check, Database, DbErrorKind, Open, Session};
use crate::migrate::verify::split_name;
use crate::schema::render::Renderer;
use crate::schema::tenant::{TABLES, TENANT_PREFIX, TenantKey};

/// What `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Tenants left `failed`, with their errors.
    pub failed_tenants: Vec<(String, String)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// How many names a line lists before "and N more".
const SHOWN: usize = 5;

fn listed(names: &[String]) -> String {
    crate::error::listed(names, SHOWN)
}

/// Runs every check that applies; a check that cannot run (no connection)
/// leaves out the ones that depend on it.
pub fn run(config: &Config) -> Report {
    let mut report = Report {
        checks: Vec::new(),
        failed_tenants: Vec::new(),
    };
    let checks = &mut report.checks;
    let db = match Database::open(config) {
        Ok(db) => db,
        Err(e) => {
            checks.push(Check::fail(
                "configuration",
                crate::error::one_line(&e),
                "fix the database URL (--database-url, PATHFINDER_DATABASE_URL or database_url in pathfinder-db.toml)",
            ));
            return report;
        }
    };
    if db.dialect() == Dialect::Oracle {
        checks.push(match crate::db::oracle::client_version() {
            Ok(v) => Check::ok("client", format!("Oracle client library {v}")),
            Err(e) => Check::fail(
                "client",
                e.message.clone(),
                "install Oracle Instant Client (Basic or Basic Light) and add its folder to LD_LIBRARY_PATH",
            ),
        });
        checks.push(tns_admin(
            &config.database_url,
            std::env::var("TNS_ADMIN").ok(),
        ));
    }
    check_database(&db, config.templates_dir.as_deref(), report)
}

/// The checks that need the database itself (`run` adds the client's and
/// the configuration's).
pub fn check_database(
    db: &Database,
    templates_dir: Option<&std::path::Path>,
    mut report: Report,
) -> Report {
    let checks = &mut report.checks;
    if !db.exists() {
        checks.push(Check::fail(
            "database",
            format!("{} does not exist", db.display_url()),
            "check the database URL, or create it with `pathfinder-db init`",
        ));
        return report;
    }
    if let Err(e) = db.check_writable() {
        checks.push(Check::fail(
            "writable",
            e.message.clone(),
            "see the message: pathfinder-db must be able to write the database",
        ));
    }
    let mut session = match db.connect_read_only() {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::fail(
                "database",
                e.message.clone(),
                "make the database reachable with these credentials (see the message)",
            ));
            return report;
        }
    };
    checks.push(Check::ok(
        "database",
        format!("{} is reachable", db.display_url()),
    ));
    match session.system().preflight() {
        Ok(found) => checks.extend(found),
        Err(e) => checks.push(Check::fail(
            "server",
            e.message.clone(),
            "see the message: the server's settings could not be read",
        )),
    }
    let renderer = match Renderer::new(db.dialect(), templates_dir) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Check::fail(
                "templates",
                e.to_string(),
                "fix the templates, or unset templates_dir to use the built-in ones",
            ));
            return report;
        }
    };
    if !system_schema(&mut session, &renderer, checks) {
        return report;
    }
    let tenants = match registry::list(session.system(), true) {
        Ok(t) => t,
        Err(e) => {
            checks.push(Check::fail(
                "registry",
                e.message.clone(),
                "grant this user SELECT on pf_tenants",
            ));
            return report;
        }
    };
    unsettled(&tenants, checks, &mut report.failed_tenants);
    let checks = &mut report.checks;
    if crate::migrate::system_is_current(session.system(), &renderer).unwrap_or(false) {
        member_counts(&mut session, checks);
    }
    if let Err(e) = catalog(&mut session, &tenants, checks) {
        checks.push(Check::fail(
            "catalog",
            crate::error::one_line(&e),
            "grant this user access to the catalog of its schema",
        ));
    }
    key_erasure(&mut session, checks);
    accounts(&mut session, checks);
    checks.extend(crate::security::grants::doctor_check(
        &mut session,
        &renderer,
    ));
    report
}

/// How long deleted keys may wait for `keys erase` before doctor fails:
/// `--erase-later` expects a nightly erasure.
const ERASURE_DUE_HOURS: i64 = 24;

/// Keys deleted or re-wrapped since the last erasure
/// ([`crate::security::keys::pending_erasure`]): fails once they waited a day.
fn key_erasure(session: &mut Session<'_>, checks: &mut Vec<Check>) {
    let pending = crate::security::keys::pending_erasure(session.system());
    checks.push(match pending {
        Err(e) => Check::fail(
            "key erasure",
            e.message,
            "grant this user SELECT on pf_audit_log",
        ),
        Ok(None) => Check::ok("key erasure", "no deleted or replaced key waits for erasure"),
        Ok(Some(crate::security::keys::PendingErasure { count, since })) => {
            let waited = crate::db::postgres::parse_timestamp(&since)
                .map(|t| time::OffsetDateTime::now_utc() - t.assume_utc())
                .unwrap_or(time::Duration::ZERO);
            let detail = format!(
                "keys deleted or re-wrapped since {since} UTC ({count} audit row(s): key.shred, key.rotate) are not erased yet: their bytes are still in the database's files"
            );
            if waited.whole_hours() >= ERASURE_DUE_HOURS {
                Check::fail(
                    "key erasure",
                    detail,
                    "run `pathfinder-db keys erase` (from cron, nightly, when deprovisioning with --erase-later)",
                )
            } else {
                Check::ok(
                    "key erasure",
                    format!("{detail} (less than {ERASURE_DUE_HOURS} h: waiting for `keys erase`)"),
                )
            }
        }
    });
}

/// Live tenants whose user's `pf_users` row is gone (deleted by the
/// application, and the user's key with it through the foreign key): the
/// tenant's tables still hold the user's rows. One anti-join over the
/// registry, served by `pf_users`' primary key.
fn accounts(session: &mut Session<'_>, checks: &mut Vec<Check>) {
    let found = session.system().query(
        "SELECT t.username FROM pf_tenants t WHERE t.user_id IS NOT NULL AND t.status <> 'deprovisioned' \
         AND NOT EXISTS (SELECT 1 FROM pf_users u WHERE u.id = t.user_id) ORDER BY t.username",
        &[],
    );
    checks.push(match found {
        Err(e) => Check::fail(
            "accounts",
            e.message,
            "grant this user SELECT on pf_users and pf_tenants",
        ),
        Ok(rows) if rows.is_empty() => Check::ok(
            "accounts",
            "every live tenant's user still has its pf_users row",
        ),
        Ok(rows) => {
            let names: Vec<String> = rows.iter().map(|r| r[0].to_text()).collect();
            Check::fail(
                "accounts",
                format!(
                    "{} live tenant(s) whose user's pf_users row was deleted (its encryption key went with it): {}",
                    names.len(),
                    listed(&names)
                ),
                "the account is gone but the tenant's tables still hold the user's rows: `pathfinder-db deprovision <user> --yes` if the user left, or, if it was deleted by mistake, restore its pf_users and pf_encryption_keys rows from a backup",
            )
        }
    });
}

/// The system schema is there, current and unchanged. False when it is
/// missing (the registry checks cannot run).
fn system_schema(session: &mut Session<'_>, renderer: &Renderer, checks: &mut Vec<Check>) -> bool {
    let applied = match crate::migrate::engine::applied_versions(
        session.system(),
        crate::migrate::SYSTEM_HISTORY,
    ) {
        Ok(a) => a,
        Err(e) => {
            checks.push(Check::fail(
                "system schema",
                e.message.clone(),
                "grant this user SELECT on refinery_schema_history",
            ));
            return false;
        }
    };
    let migrations = match renderer.system_migrations() {
        Ok(m) => m,
        Err(e) => {
            checks.push(Check::fail("templates", e.to_string(), "fix the templates"));
            return false;
        }
    };
    let latest = migrations.last().map(|m| m.version).unwrap_or(0);
    let dialect = session.dialect();
    let changed: Vec<u32> = applied
        .iter()
        .filter(|(v, _, checksum)| {
            migrations
                .iter()
                .find(|m| m.version == *v)
                .is_some_and(|m| crate::migrate::engine::checksum(m, dialect) != *checksum)
        })
        .map(|(v, _, _)| *v)
        .collect();
    let have = applied.last().map(|(v, _, _)| *v).unwrap_or(0);
    checks.push(if applied.is_empty() {
        Check::fail(
            "system schema",
            "there is no pathfinder-db system schema here",
            "run `pathfinder-db init` (or check the database URL)",
        )
    } else if !changed.is_empty() {
        Check::fail(
            "system schema",
            format!(
                "version(s) {changed:?} were applied from other templates than this pathfinder-db's"
            ),
            "use the pathfinder-db release that created this database",
        )
    } else if have > latest {
        Check::fail(
            "system schema",
            format!("version {have} is newer than this pathfinder-db knows ({latest})"),
            "upgrade pathfinder-db",
        )
    } else if have < latest {
        Check::fail(
            "system schema",
            format!("version {have}, older than this pathfinder-db's {latest}"),
            "run `pathfinder-db init` to upgrade it",
        )
    } else {
        Check::ok("system schema", format!("version {have}, current"))
    });
    !applied.is_empty()
}

/// Tenants stuck in provisioning, migrating, deprovisioning, importing or
/// moving, or failed.
fn unsettled(
    tenants: &[TenantRecord],
    checks: &mut Vec<Check>,
    failed: &mut Vec<(String, String)>,
) {
    let stuck: Vec<&TenantRecord> = tenants
        .iter()
        .filter(|t| {
            matches!(
                t.status,
                Status::Provisioning
                    | Status::Migrating
                    | Status::Failed
                    | Status::Deprovisioning
                    | Status::Importing
                    | Status::Moving
            )
        })
        .collect();
    failed.extend(
        stuck
            .iter()
            .filter(|t| t.status == Status::Failed)
            .map(|t| (t.username.clone(), t.last_error.clone().unwrap_or_default())),
    );
    if stuck.is_empty() {
        checks.push(Check::ok(
            "tenants",
            format!(
                "{} tenant(s), none failed or stuck half-way",
                tenants.iter().filter(|t| t.status.is_live()).count()
            ),
        ));
        return;
    }
    let names: Vec<String> = stuck
        .iter()
        .map(|t| match &t.last_error {
            Some(e) => format!("{} ({}: {e})", t.username, t.status),
            None => format!("{} ({})", t.username, t.status),
        })
        .collect();
    let mut fixes: Vec<String> = Vec::new();
    let has = |s: Status| stuck.iter().any(|t| t.status == s);
    // Failed at version 0: the provisioning failed, before any table.
    let never_made = |t: &&TenantRecord| t.status == Status::Failed && t.schema_version == 0;
    if has(Status::Migrating)
        || stuck
            .iter()
            .any(|t| t.status == Status::Failed && !never_made(t))
    {
        fixes.push("fix the cause, then `pathfinder-db migrate --all` finishes failed and interrupted migrations".into());
    }
    if has(Status::Provisioning) || stuck.iter().any(never_made) {
        fixes.push("`pathfinder-db provision <user>` finishes an interrupted provisioning".into());
    }
    // Each deprovisioning finished the way it was started (--archive,
    // --export): finished otherwise, the rows and the key would go.
    let deprovisioning: Vec<String> = stuck
        .iter()
        .filter(|t| t.status == Status::Deprovisioning)
        .map(|t| {
            format!(
                "`{}`",
                crate::tenants::provision::finish_command(&t.username, t.claimed_by.as_deref())
            )
        })
        .collect();
    if !deprovisioning.is_empty() {
        fixes.push(format!(
            "{} finishes a deprovisioning (as it was started), `pathfinder-db deprovision <user> --cancel` takes it back",
            listed(&deprovisioning)
        ));
    }
    if has(Status::Importing) {
        fixes.push("`pathfinder-db import <file> --as <user>` again (the same file) finishes an interrupted import, `pathfinder-db import --cancel --as <user>` removes it".into());
    }
    // Each move's own target, from its claim (or the registry once switched).
    let moving: Vec<String> = stuck
        .iter()
        .filter(|t| t.status == Status::Moving)
        .map(|t| crate::fleet::moves::ways_forward(t))
        .collect();
    if !moving.is_empty() {
        fixes.push(listed(&moving));
    }
    checks.push(Check::fail(
        "tenants",
        format!(
            "{} tenant(s) failed or stuck half-way (unless a run is working on them now): {}",
            stuck.len(),
            listed(&names)
        ),
        fixes.join("; "),
    ));
}

/// The counts of tenants per member that placement reads (kept by the
/// registry's trigger) agree with the registry.
fn member_counts(session: &mut Session<'_>, checks: &mut Vec<Check>) {
    let sys = session.system();
    let (kept, counted) = match crate::fleet::members::kept_counts(sys)
        .and_then(|k| Ok((k, crate::fleet::members::tenant_counts(sys)?)))
    {
        Ok(both) => both,
        Err(e) => {
            checks.push(Check::fail(
                "member counts",
                e.message,
                "grant this user SELECT on pf_databases and pf_tenants",
            ));
            return;
        }
    };
    let mut wrong: Vec<String> = kept
        .iter()
        .map(|(name, &n)| (name, n, counted.get(name).copied().unwrap_or(0)))
        .filter(|(_, n, c)| n != c)
        .map(|(name, n, c)| format!("{name} (kept {n}, registry {c})"))
        .collect();
    wrong.sort();
    checks.push(if kept.is_empty() {
        Check::ok("member counts", "no member databases: nothing to count")
    } else if wrong.is_empty() {
        Check::ok(
            "member counts",
            "each member's count of tenants agrees with the registry",
        )
    } else {
        Check::fail(
            "member counts",
            format!(
                "placement would misjudge these members (unless tenants were being placed meanwhile): {}",
                listed(&wrong)
            ),
            "run `pathfinder-db databases recount`",
        )
    });
}

/// Registry rows whose tables are missing, and tenant tables no registry row
/// owns: one catalog query per database on PostgreSQL and Oracle; on SQLite
/// each tenant file, and the main file and every member's folder (the
/// catalog's tenants folder included) for strays.
fn catalog(
    session: &mut Session<'_>,
    tenants: &[TenantRecord],
    checks: &mut Vec<Check>,
) -> anyhow::Result<()> {
    let dialect = session.dialect();
    // Tables should exist for these; a deprovisioned tenant may keep archives.
    let live: Vec<&TenantRecord> = tenants
        .iter()
        .filter(|t| {
            matches!(
                t.status,
                Status::Active | Status::Failed | Status::Migrating
            )
        })
        .collect();
    let mut missing: Vec<String> = Vec::new();
    let mut strays: Vec<String> = Vec::new();
    // Stray tables in the main file (SQLite) or the schema (the others): their
    // names only, one catalog query per database (their sizes would cost a
    // file lookup each). On a fleet a server member's tables belong to the
    // tenants placed on it; anything else there is a stray.
    let mut names_by_member: HashMap<String, BTreeSet<String>> = HashMap::new();
    // Members that cannot be reached (a server down, a SQLite folder whose
    // disk is not mounted): why, and the tenants on them left unchecked.
    // Their tenants are not "missing": nothing says their tables are gone.
    let mut unreachable: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let member_names: Vec<String> = if session.tenants_apart() {
        vec![crate::fleet::members::CATALOG.to_string()]
    } else {
        let mut all: Vec<String> = crate::fleet::members::list(session.system())?
            .into_iter()
            .map(|m| m.name)
            .collect();
        all.extend(tenants.iter().map(|t| t.database.clone()));
        all.push(crate::fleet::members::CATALOG.to_string());
        all.sort();
        all.dedup();
        all
    };
    for member in member_names {
        let read = session
            .database_connection(&member)
            .and_then(|conn| conn.table_names(TENANT_PREFIX, false));
        let names: BTreeSet<String> = match read {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                unreachable.insert(member, (e.message, Vec::new()));
                continue;
            }
        };
        let placed: HashMap<&str, ()> = tenants
            .iter()
            .filter(|t| t.database == member || session.tenants_apart())
            .map(|t| (t.tenant_key.as_str(), ()))
            .collect();
        strays.extend(
            names
                .iter()
                .filter(|n| looks_like_tenant(n))
                .filter(|n| split_name(n, &placed).is_none() || session.tenants_apart())
                .map(|n| match member.as_str() {
                    crate::fleet::members::CATALOG => n.clone(),
                    _ => format!("{n} (member {member})"),
                }),
        );
        // A deprovisioned tenant keeps archives at most: a live table of its
        // is left behind (a provision of the name would start empty beside it).
        if !session.tenants_apart() && tenants.iter().any(|t| t.status == Status::Deprovisioned) {
            let gone: HashMap<&str, &str> = tenants
                .iter()
                .filter(|t| t.database == member && t.status == Status::Deprovisioned)
                .map(|t| (t.tenant_key.as_str(), t.username.as_str()))
                .collect();
            let keys: HashMap<&str, ()> = gone.keys().map(|k| (*k, ())).collect();
            for n in &names {
                if let Some((key, suffix)) = split_name(n, &keys)
                    && TABLES.iter().any(|d| d.name == suffix)
                {
                    strays.push(format!(
                        "{n} (tenant {} is deprovisioned: its table was left behind)",
                        gone[key]
                    ));
                }
            }
        }
        names_by_member.insert(member, names);
    }
    let no_names = BTreeSet::new();
    for t in &live {
        let key = TenantKey::parse(&t.tenant_key, dialect)?;
        // One schema: the names read above, looked up (never copied: a copy per
        // tenant made the check quadratic in the fleet). SQLite: the tenant's file.
        let own_file: BTreeSet<String>;
        let have = if session.tenants_apart() {
            own_file = match session.tenant(&key, Open::Existing) {
                Ok(Some(mut conn)) => conn.table_names(&key.prefix(), true)?.into_iter().collect(),
                Ok(None) => {
                    missing.push(format!("{} (its file is missing)", t.username));
                    continue;
                }
                Err(e)
                    if e.kind == DbErrorKind::Connection
                        && t.database != crate::fleet::members::CATALOG =>
                {
                    unreachable
                        .entry(t.database.clone())
                        .or_insert_with(|| (e.message, Vec::new()))
                        .1
                        .push(t.username.clone());
                    continue;
                }
                Err(e) => {
                    missing.push(format!("{} ({})", t.username, e.message));
                    continue;
                }
            };
            &own_file
        } else {
            match names_by_member.get(&t.database) {
                Some(names) => names,
                None if t.database != crate::fleet::members::CATALOG => {
                    if let Some((_, unchecked)) = unreachable.get_mut(&t.database) {
                        unchecked.push(t.username.clone());
                    }
                    continue;
                }
                None => &no_names,
            }
        };
        let absent: Vec<&str> = TABLES
            .iter()
            .filter(|d| !have.contains(&key.object(d.name)))
            .map(|d| d.name)
            .collect();
        if !absent.is_empty() {
            missing.push(format!("{} (no {})", t.username, absent.join(", ")));
        }
    }
    // SQLite: tenant files in the catalog's folder and in every member's. A
    // file belongs to the tenant registered with its key on that member; a
    // moving tenant may have a file on its source and its target.
    if session.tenants_apart() {
        let by_key: HashMap<&str, &TenantRecord> =
            tenants.iter().map(|t| (t.tenant_key.as_str(), t)).collect();
        for (member, folder) in crate::fleet::members::sqlite_folders(session)? {
            // A member's folder is made by `databases add`; gone, it is a
            // disk not mounted (placement would send new tenants there).
            if member != crate::fleet::members::CATALOG
                && let Err(e) = crate::db::sqlite::member_folder_present(&member, &folder)
            {
                unreachable
                    .entry(member)
                    .or_insert_with(|| (e.message, Vec::new()));
                continue;
            }
            let files = match crate::fleet::members::tenant_files(&folder) {
                Ok(files) => files,
                Err(e) => {
                    checks.push(Check::fail(
                        "member",
                        format!(
                            "member {member}: its folder {} cannot be read: {e}",
                            folder.display()
                        ),
                        "check that the folder is there and readable (its disk mounted)",
                    ));
                    continue;
                }
            };
            for (key, path) in files {
                let path = path.display();
                match by_key.get(key.as_str()) {
                    Some(t) if t.database == member || t.status == Status::Moving => {}
                    Some(t) if t.status == Status::Deprovisioned => strays.push(format!(
                        "{path} (member {member}; tenant {} is deprovisioned: the file was left behind)",
                        t.username
                    )),
                    Some(t) => strays.push(format!(
                        "{path} (member {member}; tenant {} is registered on {}: its file is in the wrong folder)",
                        t.username, t.database
                    )),
                    None if member == crate::fleet::members::CATALOG => {
                        strays.push(path.to_string())
                    }
                    None => strays.push(format!("{path} (member {member})")),
                }
            }
            // A move's copy being written is `<key>.db.moving`: one left by a
            // move that stopped (cancelled while its target was down, or a
            // member forgotten) is listed, one of a move under way is not.
            let copying_here = format!("{}{member}", crate::fleet::moves::COPYING);
            for (key, path) in crate::fleet::members::moving_copies(&folder).unwrap_or_default() {
                let under_way = by_key.get(key.as_str()).is_some_and(|t| {
                    t.status == Status::Moving && t.claimed_by.as_deref() == Some(&copying_here)
                });
                if !under_way {
                    strays.push(format!(
                        "{} (member {member}; the partial copy of a move that stopped)",
                        path.display()
                    ));
                }
            }
        }
    }
    let unchecked_count: usize = unreachable.values().map(|(_, u)| u.len()).sum();
    for (member, (why, unchecked)) in unreachable {
        let tenants = match unchecked.len() {
            0 => String::new(),
            n => format!(
                "; its {n} tenant(s) were not checked: {}",
                listed(&unchecked)
            ),
        };
        checks.push(Check::fail(
            "member",
            match crate::fleet::members::names_member(&member, &why) {
                true => format!("{why}{tenants}"),
                false => format!("member {member} cannot be read: {why}{tenants}"),
            },
            "bring it back (start the server, mount the disk, or `pathfinder-db databases set-url` to its copy), then run doctor again; `pathfinder-db databases list` shows every member's state",
        ));
    }
    checks.push(if missing.is_empty() && unchecked_count == 0 {
        Check::ok(
            "registry",
            format!("every live tenant ({}) has its nine tables", live.len()),
        )
    } else if missing.is_empty() {
        // Not "every": the ones on a member that cannot be read were not looked at.
        Check::ok(
            "registry",
            format!(
                "every live tenant checked ({} of {}) has its nine tables; {unchecked_count} on members that cannot be read were not checked",
                live.len() - unchecked_count.min(live.len()),
                live.len()
            ),
        )
    } else {
        Check::fail(
            "registry",
            format!(
                "{} registered tenant(s) lack tables: {}",
                missing.len(),
                listed(&missing)
            ),
            "restore what is missing from a backup (the tables, or a SQLite tenant's whole file); where some tables remain they still hold the user's rows (`pathfinder-db export <user> --out FILE` keeps a copy), so only a user whose data may go is removed with `pathfinder-db deprovision <user> --yes`",
        )
    });
    checks.push(if strays.is_empty() {
        Check::ok("catalog", "no tenant tables outside the registry")
    } else {
        Check::fail(
            "catalog",
            format!(
                "{} tenant table(s) or file(s) no registry row owns: {}",
                strays.len(),
                listed(&strays)
            ),
            "`pathfinder-db adopt --scan --dry-run` shows which can be adopted; drop or move away the rest",
        )
    });
    Ok(())
}

/// Whether `name` is shaped as a tenant object, `pf_user_<key>_<suffix>` with
/// a known suffix (`pf_user_sessions`, a system table, is not).
fn looks_like_tenant(name: &str) -> bool {
    name.strip_prefix(TENANT_PREFIX).is_some_and(|rest| {
        rest.match_indices('_').any(|(i, _)| {
            i > 0 && crate::schema::tenant::TENANT_OBJECT_SUFFIXES.contains(&&rest[i + 1..])
        })
    })
}

/// Oracle: a TNS alias needs `TNS_ADMIN` with a tnsnames.ora naming it, and an
/// Autonomous Database wallet its files; Easy Connect strings need neither.
pub fn tns_admin(url: &str, tns_admin: Option<String>) -> Check {
    let connect = url.rsplit_once('@').map(|(_, c)| c).unwrap_or("");
    let alias = !connect.is_empty() && !connect.contains(['/', ':', '(']);
    let Some(dir) = tns_admin.filter(|d| !d.is_empty()) else {
        return if alias {
            Check::fail(
                "tns_admin",
                format!("the URL names the TNS alias {connect:?} but TNS_ADMIN is not set"),
                "set TNS_ADMIN to the folder with tnsnames.ora (for Autonomous Database: the unzipped wallet)",
            )
        } else {
            Check::ok("tns_admin", "not needed: the URL is an Easy Connect string")
        };
    };
    let dir = Path::new(&dir);
    if !dir.is_dir() {
        return Check::fail(
            "tns_admin",
            format!("TNS_ADMIN={} is not a folder", dir.display()),
            "point TNS_ADMIN at the folder with tnsnames.ora (the unzipped wallet)",
        );
    }
    let tnsnames = std::fs::read_to_string(dir.join("tnsnames.ora")).unwrap_or_default();
    if alias
        && !tnsnames
            .lines()
            .filter_map(|l| l.split('=').next())
            .any(|name| name.trim().eq_ignore_ascii_case(connect))
    {
        return Check::fail(
            "tns_admin",
            format!(
                "{} names no alias {connect:?}",
                dir.join("tnsnames.ora").display()
            ),
            "use an alias from tnsnames.ora in the URL (oracle://USER@ALIAS), or fix TNS_ADMIN",
        );
    }
    let sqlnet = std::fs::read_to_string(dir.join("sqlnet.ora")).unwrap_or_default();
    let wants_wallet = sqlnet.to_ascii_uppercase().contains("WALLET_LOCATION");
    let has_wallet = dir.join("cwallet.sso").is_file() || dir.join("ewallet.p12").is_file();
    if wants_wallet && !has_wallet {
        return Check::fail(
            "tns_admin",
            format!(
                "{} asks for a wallet but {} has no cwallet.sso",
                dir.join("sqlnet.ora").display(),
                dir.display()
            ),
            "unzip the whole Autonomous Database wallet into TNS_ADMIN",
        );
    }
    Check::ok(
        "tns_admin",
        format!(
            "TNS_ADMIN={}{}",
            dir.display(),
            if has_wallet { " with a wallet" } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_tables_are_not_tenant_tables() {
        assert!(!looks_like_tenant("pf_user_sessions"));
        assert!(looks_like_tenant("pf_user_bob_experiences"));
        assert!(looks_like_tenant("pf_user_a_b_skills_archive"));
        assert!(!looks_like_tenant("pf_users"));
    }

    #[test]
    fn tns_admin_is_checked_for_aliases_and_wallets() {
        assert!(tns_admin("oracle://scott@db.example.com:1521/svc", None).ok);
        let missing = tns_admin("oracle://scott@mydb_high", None);
        assert!(!missing.ok && missing.fix.unwrap().contains("TNS_ADMIN"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("tnsnames.ora"),
            "mydb_high = (description= (address=(protocol=tcps)(host=h)))\n",
        )
        .unwrap();
        assert!(tns_admin("oracle://scott@mydb_high", Some(d.clone())).ok);
        assert!(!tns_admin("oracle://scott@other_low", Some(d.clone())).ok);
        std::fs::write(
            dir.path().join("sqlnet.ora"),
            "WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY=\"?/network/admin\")))\n",
        )
        .unwrap();
        let no_wallet = tns_admin("oracle://scott@mydb_high", Some(d.clone()));
        assert!(!no_wallet.ok && no_wallet.detail.contains("cwallet.sso"));
        std::fs::write(dir.path().join("cwallet.sso"), "x").unwrap();
        assert!(tns_admin("oracle://scott@mydb_high", Some(d)).ok);
    }
}
