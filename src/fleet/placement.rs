//! Where a new tenant goes: the open member with the most free places (a
//! member without a capacity counts as unlimited; among those, the one with
//! the fewest tenants; ties by name), decided
//! under a lock in the transaction that registers the tenant, so that
//! concurrent provisioners never overfill a member.

use crate::db::{Connection, Lock};
use crate::error::UsageError;
use crate::fleet::members::{self, MemberState};

/// Chooses the member for a new tenant inside the caller's transaction on
/// the catalog, after taking the placement lock (held until that
/// transaction ends; on Oracle until [`release`]). `requested`: the member
/// `--database` names; `passed_over`: members found unreachable, never
/// chosen. None: the catalog.
pub fn choose(
    sys: &mut dyn Connection,
    requested: Option<&str>,
    passed_over: &[String],
) -> anyhow::Result<Option<String>> {
    // Without members every tenant goes to the catalog, and no lock is
    // needed: on PostgreSQL the registration shares the transaction of the
    // tenant's DDL, so a lock here would make provisioners run one by one.
    // (A member added meanwhile takes tenants from the next placement on.)
    if requested.is_none() && members::list(sys)?.iter().all(|m| m.is_catalog()) {
        return Ok(None);
    }
    sys.lock(&Lock::Placement)?;
    let all = members::list(sys)?;
    let wanted: Vec<&members::Member> = all
        .iter()
        .filter(|m| match requested {
            Some(name) => m.name == name,
            None => m.state == MemberState::Open,
        })
        .collect();
    let counts = members::placement_counts(sys, &wanted)?;
    let held = |name: &str| counts.get(name).copied().unwrap_or(0);
    if let Some(name) = requested {
        let Some(member) = all.iter().find(|m| m.name == name) else {
            return Err(UsageError::new(format!(
                "no member database named {name}: `pathfinder-db databases list` shows them"
            ))
            .into());
        };
        // Refusals, like an unknown member: nothing was changed (exit 2).
        if member.state == MemberState::Draining {
            return Err(UsageError::new(format!(
                "member {name} is draining and takes no new tenants: `pathfinder-db databases open {name}` opens it again"
            ))
            .into());
        }
        if member.free(held(name)) == Some(0) {
            return Err(UsageError::new(format!(
                "member {name} is full ({} tenants, capacity {}): choose another with --database, or raise its capacity (`pathfinder-db databases set-capacity {name} N`)",
                held(name),
                member.capacity.unwrap_or(0)
            ))
            .into());
        }
        return Ok((!member.is_catalog()).then(|| name.to_string()));
    }
    // Most free places first (no limit beats any number); among equals
    // (members without a capacity) the one holding fewest tenants, so that
    // they fill evenly; then by name.
    let best = all
        .iter()
        .filter(|m| m.state == MemberState::Open && !passed_over.contains(&m.name))
        .filter(|m| m.free(held(&m.name)) != Some(0))
        .min_by(|a, b| {
            let free = |m: &members::Member| m.free(held(&m.name)).unwrap_or(i64::MAX);
            free(b)
                .cmp(&free(a))
                .then_with(|| held(&a.name).cmp(&held(&b.name)))
                .then_with(|| a.name.cmp(&b.name))
        });
    match best {
        Some(m) => Ok((!m.is_catalog()).then(|| m.name.clone())),
        None => Err(UsageError::new(
            "every member database is full or draining: add one with `pathfinder-db databases add NAME URL`, open one with `pathfinder-db databases open NAME`, or raise a capacity (`pathfinder-db databases set-capacity NAME N`)",
        )
        .into()),
    }
}

/// Ends the placement lock where it outlives the transaction (Oracle).
pub fn release(sys: &mut dyn Connection) {
    let _ = sys.unlock(&Lock::Placement);
}

/// Where a tenant lives, for the application's routing (`where`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Location {
    pub username: String,
    pub tenant_key: String,
    pub status: crate::catalog::registry::Status,
    /// The member's name (`catalog`: the catalog itself).
    pub database: String,
    /// The member's URL, without a password (SQLite: the tenant's file).
    pub url: String,
}

/// `where USER`: the member holding `username`'s tables.
pub fn locate(session: &mut crate::db::Session<'_>, username: &str) -> anyhow::Result<Location> {
    let record = crate::catalog::registry::get(session.system(), username)?
        .filter(|r| r.status != crate::catalog::registry::Status::Deprovisioned)
        .ok_or_else(|| {
            UsageError::new(format!(
                "no tenant named {username}: `pathfinder-db tenants` lists them"
            ))
        })?;
    let db = session.database();
    let member = members::get(session.system(), &record.database)?;
    if member.is_none() && record.database != members::CATALOG {
        // The application would be routed to the catalog, where the tenant is not.
        anyhow::bail!(
            "tenant {username} is registered on member {}, which `pathfinder-db databases list` does not know (its registry row was changed by hand?): no address to give",
            record.database
        );
    }
    let stored = member.and_then(|m| m.url);
    let url = match (db.dialect(), stored) {
        (crate::db::dialect::Dialect::Sqlite, folder) => {
            let key = crate::schema::tenant::TenantKey::parse(&record.tenant_key, db.dialect())?;
            match folder {
                Some(f) => crate::db::sqlite::member_folder(&f)
                    .join(format!("{key}.db"))
                    .display()
                    .to_string(),
                None => db
                    .sqlite_tenant_file(&key)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            }
        }
        (_, Some(url)) => crate::db::redact_url(&url),
        (_, None) => db.display_url().to_string(),
    };
    Ok(Location {
        username: record.username,
        tenant_key: record.tenant_key,
        status: record.status,
        database: record.database,
        url,
    })
}
