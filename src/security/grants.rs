//! Least privilege: two principals.
//!
//! pathfinder-db connects as the **owner**: it owns every object and runs
//! every DDL. The application connects as a role of its own, the
//! **application role** (`app_role`, default `pathfinder_app`), granted only
//! what it needs:
//!
//! | objects | the application may |
//! |---|---|
//! | tenant tables `pf_user_<key>_<table>` | SELECT, INSERT, UPDATE, DELETE |
//! | archives `pf_user_<key>_<table>_archive`, the career summary | SELECT |
//! | `pf_audit_log` | SELECT, INSERT (never UPDATE or DELETE) |
//! | `pf_users`, `pf_user_sessions` | SELECT, INSERT, UPDATE, DELETE |
//! | `pf_encryption_keys`, the reference catalogs `pf_ref_*` | SELECT |
//! | Oracle: the package `pf_request_context` | EXECUTE |
//! | the registry, the tool's own tables, everything else | nothing |
//!
//! and never TRUNCATE, REFERENCES, TRIGGER, ownership or DDL. The tables of a
//! deprovisioned tenant (archives kept by `deprovision --archive`) are not
//! the application's any more: nothing.
//!
//! On top of the grants, the shared tables holding users' rows are protected
//! by row-level security keyed by the user the application acts for (system
//! version 6; the tables and their key columns are [`OWN_ROWS`]).
//!
//! Grants follow what pathfinder-db creates when the configured role exists
//! in the database ([`crate::db::Connection::app_role`]): the system tables
//! at `init`, a tenant's tables when it is provisioned, migrated, imported
//! or adopted, an archive when a sweep creates it. Without the role nothing is
//! granted and everything works as before; `grants apply` brings a database
//! (tenants made before, or by hand) to the expected state, and `grants
//! check` (also part of `doctor` and `verify`) reports drift. Both read the
//! catalog in a few set-based queries, whatever the number of tenants, and
//! compare here; on a fleet, then each member the same way, for the tenants
//! the registry places there (roles are per server: a member's needs the
//! role too). Every grant change is audited: in the transaction that makes
//! it on PostgreSQL, right after it on Oracle (where a GRANT commits).
//!
//! SQLite has no roles: its files are created readable by their owner only
//! ([`files`]), which `grants check` and `grants apply` check and repair.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::catalog::audit::{self, AuditEntry};
use crate::catalog::registry::{self, Status};
use crate::db::dialect::Dialect;
use crate::db::{AccessCatalog, Connection, DbError, ObjectAccess, Tx};
use crate::error::UsageError;
use crate::fleet::members::CATALOG;
use crate::schema::render::{Renderer, Statement};
use crate::schema::tenant::{CAREER_SUMMARY, TABLES, TENANT_PREFIX, TenantKey};

/// The application role when none is configured.
pub const DEFAULT_APP_ROLE: &str = "pathfinder_app";

/// PostgreSQL: the setting that names the user a request is served for
/// (`SET LOCAL pathfinder.user_id = '<pf_users.id>'`).
pub const USER_SETTING: &str = "pathfinder.user_id";

/// Oracle: the application context holding the user, and the package (the
/// only code allowed to set it) whose `set_user` the application calls.
pub const ORACLE_CONTEXT: &str = "pathfinder_ctx";
pub const ORACLE_CONTEXT_PACKAGE: &str = "pf_request_context";
/// Oracle: the VPD policy function of [`OWN_ROWS`].
pub const ORACLE_POLICY_FUNCTION: &str = "pf_own_rows_predicate";

/// The shared tables with row-level security, and the column that says
/// whose row it is. System version 6 renders a policy for each (it lists
/// them itself: an applied version never changes; a test holds the two equal).
pub const OWN_ROWS: [(&str, &str); 4] = [
    ("pf_users", "id"),
    ("pf_user_sessions", "user_id"),
    ("pf_encryption_keys", "user_id"),
    ("pf_audit_log", "user_id"),
];

/// The name of the policy on `table`.
pub fn policy_name(table: &str) -> String {
    format!("{table}_own_rows")
}

const DML: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
const READ: &[&str] = &["SELECT"];
const APPEND: &[&str] = &["SELECT", "INSERT"];
const EXECUTE: &[&str] = &["EXECUTE"];
const NOTHING: &[&str] = &[];

/// Statements and objects per batch: one GRANT names up to this many
/// objects (PostgreSQL), one PL/SQL block runs up to this many GRANTs (Oracle).
const OBJECTS_PER_STATEMENT: usize = 500;
const GRANTS_PER_BLOCK: usize = 50;
/// Changes per transaction (each audited in it) when `grants apply` runs.
const CHANGES_PER_COMMIT: usize = 20;

/// Checks a configured role name: a plain lower-case identifier (never
/// quoted), not a name PostgreSQL reserves. Returns it.
pub fn check_role_name(name: &str, from: &str) -> Result<String, UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_")
        && !matches!(
            name,
            "public" | "none" | "current_user" | "current_role" | "session_user" | "all"
        );
    if ok {
        Ok(name.to_string())
    } else {
        Err(UsageError::new(format!(
            "{from} {name:?} is not a usable role name: a lowercase ASCII letter, then a-z, 0-9 and _, at most 63 characters, not starting with pg_ and not a reserved word (public, all, ...)"
        )))
    }
}

// ---------------------------------------------------------------------------
// What the application may do.

/// The system objects the application may use, and how.
fn system_expected(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "pf_users" | "pf_user_sessions" => DML,
        "pf_audit_log" => APPEND,
        "pf_encryption_keys" => READ,
        ORACLE_CONTEXT_PACKAGE => EXECUTE,
        n if n.starts_with("pf_ref_") => READ,
        _ => return None,
    })
}

/// What the application may do with a tenant's object, by its suffix.
fn tenant_expected(suffix: &str) -> &'static [&'static str] {
    let table = |name: &str| TABLES.iter().any(|t| t.name == name);
    if table(suffix) {
        DML
    } else if suffix == CAREER_SUMMARY || suffix.strip_suffix("_archive").is_some_and(table) {
        READ
    } else {
        NOTHING
    }
}

/// The tenants a check knows: key -> whether the application may use its
/// objects (any state but deprovisioned).
pub type Tenants = HashMap<String, bool>;

/// Splits `pf_user_<key>_<suffix>` for a key of `tenants`.
fn tenant_of<'a>(name: &'a str, tenants: &Tenants) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(TENANT_PREFIX)?;
    rest.match_indices('_').find_map(|(i, _)| {
        let (key, suffix) = (&rest[..i], &rest[i + 1..]);
        (tenants.contains_key(key)
            && crate::schema::tenant::TENANT_OBJECT_SUFFIXES.contains(&suffix))
        .then_some((key, suffix))
    })
}

/// What the application may do with `name` (lower case).
pub fn expected(name: &str, tenants: &Tenants) -> &'static [&'static str] {
    if let Some(privileges) = system_expected(name) {
        return privileges;
    }
    match tenant_of(name, tenants) {
        Some((key, suffix)) if tenants.get(key) == Some(&true) => tenant_expected(suffix),
        _ => NOTHING,
    }
}

// ---------------------------------------------------------------------------
// Drift.

/// One way the database differs from what the application should be able
/// to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The configured role does not exist.
    RoleMissing {
        role: String,
    },
    /// Privileges the application needs on an object and lacks.
    MissingGrant {
        object: String,
        kind: String,
        privileges: Vec<String>,
    },
    /// Privileges beyond what the application needs, held through `via`
    /// (`role`, `PUBLIC`, or another role), or (`grant_option`) the right to
    /// pass on privileges it may hold.
    ExtraPrivilege {
        object: String,
        kind: String,
        privileges: Vec<String>,
        via: String,
        grant_option: bool,
    },
    /// PostgreSQL: row-level security is off on a shared table.
    RowSecurityDisabled {
        table: String,
    },
    /// PostgreSQL: row-level security is forced on the owner too, so
    /// pathfinder-db's own jobs would see no rows.
    RowSecurityForced {
        table: String,
    },
    PolicyMissing {
        table: String,
        policy: String,
    },
    /// Oracle: the policy is there but disabled.
    PolicyDisabled {
        table: String,
        policy: String,
    },
    /// The policy is not the one the schema defines.
    PolicyChanged {
        table: String,
        policy: String,
        found: String,
    },
    /// PostgreSQL: another permissive policy on a shared table (permissive
    /// policies are OR-ed: it widens what the application sees).
    ExtraPolicy {
        table: String,
        policy: String,
    },
    /// PostgreSQL: column privileges (`GRANT UPDATE (col) ON ...`):
    /// pathfinder-db never grants one, so each is beyond what the
    /// application needs. `privileges`: `UPDATE (col, ...)` each.
    ExtraColumnPrivilege {
        object: String,
        kind: String,
        privileges: Vec<String>,
        via: String,
    },
    /// PostgreSQL: CREATE on the database (`on`: `database`; it may create
    /// schemas, and one named after the owner role would shadow
    /// pathfinder-db's tables) or on the schema (`schema`: DDL), held
    /// through `via` (as for [`Problem::ExtraPrivilege`]). `revocable`: the
    /// role pathfinder-db connects as may revoke it (it acts as the owner).
    CreateRight {
        on: String,
        name: String,
        via: String,
        revocable: bool,
    },
    /// PostgreSQL: a role that is a member of the application role (a login
    /// the application uses) escapes row-level security: superuser,
    /// BYPASSRLS, membership in the owner role. Its fix is a DBA's.
    MemberRole {
        member: String,
        what: String,
    },
    /// The application role owns an object (or the schema).
    Owns {
        object: String,
    },
    /// The application role holds DDL rights or escapes row security:
    /// CREATE on the schema, superuser, BYPASSRLS, membership in the owner
    /// role, an Oracle system privilege.
    DdlRights {
        what: String,
    },
}

impl Problem {
    /// One line for people.
    pub fn describe(&self, role: &str) -> String {
        let list = |p: &[String]| p.join(", ");
        match self {
            Problem::RoleMissing { role } => {
                format!("role {role} does not exist: nothing is granted to the application yet")
            }
            Problem::MissingGrant {
                object, privileges, ..
            } => format!("missing grant: {} on {object} to {role}", list(privileges)),
            Problem::ExtraPrivilege {
                object,
                privileges,
                via,
                grant_option,
                ..
            } => {
                let through = through(via, role);
                if *grant_option {
                    format!(
                        "extra privilege: {role} may grant {} on {object} to others{through}",
                        list(privileges)
                    )
                } else {
                    format!("extra privilege: {} on {object}{through}", list(privileges))
                }
            }
            Problem::RowSecurityDisabled { table } => {
                format!("policy disabled: row-level security is off on {table}")
            }
            Problem::RowSecurityForced { table } => format!(
                "row-level security is forced on {table}: pathfinder-db's own jobs would see no rows"
            ),
            Problem::PolicyMissing { table, policy } => {
                format!("policy missing: {policy} on {table}")
            }
            Problem::PolicyDisabled { table, policy } => {
                format!("policy disabled: {policy} on {table}")
            }
            Problem::PolicyChanged {
                table,
                policy,
                found,
            } => format!("policy changed: {policy} on {table} is {found}"),
            Problem::ExtraPolicy { table, policy } => {
                format!("extra policy: {policy} on {table} widens what the application sees")
            }
            Problem::ExtraColumnPrivilege {
                object,
                privileges,
                via,
                ..
            } => format!(
                "extra privilege: {} on {object} (column privilege){}",
                privileges.join(", "),
                through(via, role)
            ),
            Problem::CreateRight {
                on,
                name,
                via,
                revocable,
            } => {
                let (who, grantee) = match via.as_str() {
                    "role" => (role.to_string(), role.to_string()),
                    "PUBLIC" => (format!("{role} (through PUBLIC)"), "PUBLIC".to_string()),
                    v => match v.strip_prefix("member:") {
                        Some(m) => (format!("{m}, a member of {role},"), quote_pg(m)),
                        None => (format!("{role} (through role {v})"), quote_pg(v)),
                    },
                };
                let (what, owner) = if on == "database" {
                    (
                        format!(
                            "has CREATE on database {name}: it may create schemas, and one named after the owner role would shadow pathfinder-db's tables"
                        ),
                        "the database's",
                    )
                } else {
                    (
                        format!("has CREATE on the schema {name} (DDL rights)"),
                        "its",
                    )
                };
                let fix = format!(
                    "REVOKE CREATE ON {} {} FROM {grantee}",
                    on.to_ascii_uppercase(),
                    quote_pg(name)
                );
                if *revocable {
                    format!("{who} {what} ({fix})")
                } else {
                    format!("{who} {what} (as {owner} owner: {fix})")
                }
            }
            Problem::MemberRole { member, what } => {
                format!("{member}, a member of {role}, {what}")
            }
            Problem::Owns { object } => format!("{role} owns {object}"),
            Problem::DdlRights { what } => format!("{role} {what}"),
        }
    }
}

/// How a privilege reached the role, for a message: nothing when granted
/// to it, else who holds it.
fn through(via: &str, role: &str) -> String {
    match via {
        "role" => String::new(),
        "PUBLIC" => " (granted to PUBLIC)".into(),
        other => match other.strip_prefix("member:") {
            Some(member) => format!(" (granted to {member}, a member of {role})"),
            None => format!(" (through role {other})"),
        },
    }
}

/// Who a privilege held through `via` is revoked from: the role, PUBLIC, or
/// a member of the role (quoted where needed). None: through another role
/// the role is a member of (a DBA's decision).
fn revoke_from(via: &str, role: &str) -> Option<String> {
    match via {
        "role" => Some(role.to_string()),
        "PUBLIC" => Some("PUBLIC".to_string()),
        other => other.strip_prefix("member:").map(quote_pg),
    }
}

/// What `grants check` found on one database.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`CATALOG`], or the member database checked.
    pub database: String,
    pub role: String,
    pub role_exists: bool,
    /// Objects compared.
    pub objects: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The problems of `catalog` against the expected state. `tenants`: every
/// registered tenant (with `names`, the catalog was read for those only).
pub fn compare(
    dialect: Dialect,
    role: &str,
    catalog: &AccessCatalog,
    tenants: &Tenants,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let facts = &catalog.role;
    if facts.exists {
        let mut ddl = |what: String| problems.push(Problem::DdlRights { what });
        if facts.superuser {
            ddl(format!(
                "is a superuser: it bypasses every grant and row-level security (ALTER ROLE {role} NOSUPERUSER)"
            ));
        }
        if facts.bypass_rls {
            ddl(format!(
                "has BYPASSRLS: row-level security does not apply to it (ALTER ROLE {role} NOBYPASSRLS)"
            ));
        }
        if facts.member_of_owner {
            ddl(format!(
                "is a member of the owner role: it may act as the owner (REVOKE <owner> FROM {role})"
            ));
        }
        for privilege in &facts.system_privileges {
            if privilege != "CREATE SESSION" {
                ddl(format!(
                    "holds the system privilege {privilege} (REVOKE {privilege} FROM {role})"
                ));
            }
        }
        // Predefined roles read or write every table past the grants (or the
        // server's files): held by the role, or by a login that is its member.
        for (who, predefined) in &facts.predefined {
            let what = format!(
                "is a member of {predefined}: it reaches past every grant (REVOKE {predefined} FROM {})",
                quote_pg(who)
            );
            if who == role {
                problems.push(Problem::DdlRights { what });
            } else {
                problems.push(Problem::MemberRole {
                    member: who.clone(),
                    what,
                });
            }
        }
        // CREATE on the database, then on the schema: granted to the role,
        // PUBLIC, a role it is a member of, or a member of it.
        let rights = [
            (
                "database",
                &facts.database,
                &facts.database_create,
                facts.may_revoke_database,
            ),
            (
                "schema",
                &facts.schema,
                &facts.schema_create,
                facts.may_revoke_schema,
            ),
        ];
        for (on, name, vias, may_revoke) in rights {
            for via in vias {
                problems.push(Problem::CreateRight {
                    on: on.into(),
                    name: name.clone(),
                    via: via.clone(),
                    revocable: may_revoke && revoke_from(via, role).is_some(),
                });
            }
        }
        for m in &facts.members {
            let mut member = |what: String| {
                problems.push(Problem::MemberRole {
                    member: m.name.clone(),
                    what,
                })
            };
            let name = quote_pg(&m.name);
            if m.superuser {
                member(format!(
                    "is a superuser: it bypasses every grant and row-level security (ALTER ROLE {name} NOSUPERUSER)"
                ));
            }
            if m.bypass_rls {
                member(format!(
                    "has BYPASSRLS: row-level security does not apply to it (ALTER ROLE {name} NOBYPASSRLS)"
                ));
            }
            if m.member_of_owner {
                member(format!(
                    "is a member of the owner role: it may act as the owner (REVOKE <owner> FROM {name})"
                ));
            }
            let rights = [
                (
                    "database",
                    &facts.database,
                    m.database_create,
                    facts.may_revoke_database,
                ),
                (
                    "schema",
                    &facts.schema,
                    m.schema_create,
                    facts.may_revoke_schema,
                ),
            ];
            for (on, object, held, may_revoke) in rights {
                if held {
                    problems.push(Problem::CreateRight {
                        on: on.into(),
                        name: object.clone(),
                        via: format!("member:{}", m.name),
                        revocable: may_revoke,
                    });
                }
            }
        }
        if facts.owns_schema {
            problems.push(Problem::Owns {
                object: "the schema".into(),
            });
        }
        for object in &facts.owned {
            problems.push(Problem::Owns {
                object: object.clone(),
            });
        }
    }
    for object in &catalog.objects {
        problems.extend(object_problems(object, facts.exists, tenants));
    }
    problems.extend(policy_problems(dialect, catalog));
    problems
}

fn object_problems(object: &ObjectAccess, role_exists: bool, tenants: &Tenants) -> Vec<Problem> {
    let mut out = Vec::new();
    let want: BTreeSet<&str> = expected(&object.name, tenants).iter().copied().collect();
    if object.owned_by_role {
        out.push(Problem::Owns {
            object: object.name.clone(),
        });
    }
    // Extra: anything PUBLIC holds, what the role holds beyond `want` (by
    // whom it was given), the right to pass privileges on.
    // Column privileges: never pathfinder-db's, all extra (by whom they
    // were given, then privilege, then columns).
    let mut extra: BTreeMap<(String, bool), BTreeSet<String>> = BTreeMap::new();
    let mut columns: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut held_by_role: BTreeSet<&str> = BTreeSet::new();
    for p in &object.privileges {
        if let Some(column) = &p.column {
            columns
                .entry(p.via.clone())
                .or_default()
                .entry(p.privilege.clone())
                .or_default()
                .push(column.clone());
            continue;
        }
        if p.via == "role" {
            held_by_role.insert(p.privilege.as_str());
        }
        // A grant to a member of the role (a login) is never pathfinder-db's.
        let beyond = p.via == "PUBLIC"
            || p.via.starts_with("member:")
            || !want.contains(p.privilege.as_str());
        if beyond {
            extra
                .entry((p.via.clone(), false))
                .or_default()
                .insert(p.privilege.clone());
        } else if p.grantable {
            extra
                .entry((p.via.clone(), true))
                .or_default()
                .insert(p.privilege.clone());
        }
    }
    if role_exists {
        let missing: Vec<String> = want
            .iter()
            .filter(|p| !held_by_role.contains(*p))
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() {
            out.push(Problem::MissingGrant {
                object: object.name.clone(),
                kind: object.kind.clone(),
                privileges: in_order(missing),
            });
        }
    }
    for ((via, grant_option), privileges) in extra {
        out.push(Problem::ExtraPrivilege {
            object: object.name.clone(),
            kind: object.kind.clone(),
            privileges: in_order(privileges.into_iter().collect()),
            via,
            grant_option,
        });
    }
    for (via, by_privilege) in columns {
        let privileges = in_order(by_privilege.keys().cloned().collect())
            .into_iter()
            .map(|p| {
                let mut cols = by_privilege[&p].clone();
                cols.sort();
                cols.dedup();
                format!("{p} ({})", cols.join(", "))
            })
            .collect();
        out.push(Problem::ExtraColumnPrivilege {
            object: object.name.clone(),
            kind: object.kind.clone(),
            privileges,
            via,
        });
    }
    out
}

/// SELECT, INSERT, UPDATE, DELETE first, in that order, then the rest.
fn in_order(mut privileges: Vec<String>) -> Vec<String> {
    let rank = |p: &String| {
        ["SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE"]
            .iter()
            .position(|k| k == p)
            .unwrap_or(9)
    };
    privileges.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    privileges
}

/// `(id = NULLIF(...))` as PostgreSQL prints it: compared without casts,
/// parentheses, quotes' neighbours and spaces, in lower case.
fn normalize_expression(text: &str) -> String {
    let mut s = text.to_ascii_lowercase();
    for cast in ["::character varying", "::text", "::varchar"] {
        s = s.replace(cast, "");
    }
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect()
}

/// The expression of the policy on a table keyed by `column` (PostgreSQL),
/// as system version 6 writes it.
pub fn postgres_policy_expression(column: &str) -> String {
    format!("{column} = NULLIF(current_setting('{USER_SETTING}', true), '')")
}

fn policy_problems(dialect: Dialect, catalog: &AccessCatalog) -> Vec<Problem> {
    let mut out = Vec::new();
    for (table, column) in OWN_ROWS {
        let Some(object) = catalog.objects.iter().find(|o| o.name == table) else {
            continue;
        };
        let name = policy_name(table);
        let on_table: Vec<_> = catalog
            .policies
            .iter()
            .filter(|p| p.table == table)
            .collect();
        let ours = on_table.iter().find(|p| p.name == name);
        match dialect {
            Dialect::Postgres => {
                if !object.row_security {
                    out.push(Problem::RowSecurityDisabled {
                        table: table.into(),
                    });
                }
                if object.row_security_forced {
                    out.push(Problem::RowSecurityForced {
                        table: table.into(),
                    });
                }
                let expression = normalize_expression(&postgres_policy_expression(column));
                match ours {
                    None => out.push(Problem::PolicyMissing {
                        table: table.into(),
                        policy: name.clone(),
                    }),
                    Some(p) => {
                        let same = |e: &Option<String>| {
                            e.as_deref().map(normalize_expression).as_deref()
                                == Some(expression.as_str())
                        };
                        let fine = p.permissive
                            && p.command == "ALL"
                            && p.roles == ["public"]
                            && same(&p.using)
                            && same(&p.check);
                        if !fine {
                            out.push(Problem::PolicyChanged {
                                table: table.into(),
                                policy: name.clone(),
                                found: format!(
                                    "{} FOR {} TO {} USING ({}) WITH CHECK ({})",
                                    if p.permissive {
                                        "PERMISSIVE"
                                    } else {
                                        "RESTRICTIVE"
                                    },
                                    p.command,
                                    p.roles.join(", "),
                                    p.using.as_deref().unwrap_or(""),
                                    p.check.as_deref().unwrap_or("")
                                ),
                            });
                        }
                    }
                }
                for p in on_table.iter().filter(|p| p.name != name && p.permissive) {
                    out.push(Problem::ExtraPolicy {
                        table: table.into(),
                        policy: p.name.clone(),
                    });
                }
            }
            Dialect::Oracle => match ours {
                None => out.push(Problem::PolicyMissing {
                    table: table.into(),
                    policy: name.clone(),
                }),
                Some(p) => {
                    let function = p.using.as_deref().unwrap_or("");
                    if !function.eq_ignore_ascii_case(ORACLE_POLICY_FUNCTION)
                        || p.command != "SELECT, INSERT, UPDATE, DELETE"
                    {
                        out.push(Problem::PolicyChanged {
                            table: table.into(),
                            policy: name.clone(),
                            found: format!("function {function} on {}", p.command),
                        });
                    } else if !p.enabled {
                        out.push(Problem::PolicyDisabled {
                            table: table.into(),
                            policy: name.clone(),
                        });
                    }
                }
            },
            Dialect::Sqlite => {}
        }
    }
    out
}

/// The tenants each database holds, from one registry read: database name
/// ([`CATALOG`] or a member's) -> key -> whether its objects are the
/// application's (any state but deprovisioned). A moving tenant is on its
/// source and its target both: the move grants the copy as it makes it.
pub fn placement(conn: &mut dyn Connection) -> Result<HashMap<String, Tenants>, DbError> {
    use crate::fleet::moves::{COPYING, SWITCHED};
    let mut out: HashMap<String, Tenants> = HashMap::new();
    for t in registry::list(conn, true)? {
        let live = t.status != Status::Deprovisioned;
        let other = t.claimed_by.as_deref().and_then(|c| {
            c.strip_prefix(COPYING)
                .or_else(|| c.strip_prefix(SWITCHED))
                .filter(|_| t.status == Status::Moving)
        });
        if let Some(other) = other {
            out.entry(other.to_string())
                .or_default()
                .insert(t.tenant_key.clone(), live);
        }
        out.entry(t.database)
            .or_default()
            .insert(t.tenant_key, live);
    }
    Ok(out)
}

/// The objects of `tenants` (every name they may have) and the shared
/// ones, for a check of some tenants only.
fn names_of(tenants: &[TenantKey], renderer: &Renderer) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = system_objects(renderer)?;
    for key in tenants {
        for def in TABLES {
            names.push(key.object(def.name));
            names.push(key.object(&format!("{}_archive", def.name)));
        }
        names.push(key.object(CAREER_SUMMARY));
        names.push(key.object(crate::schema::tenant::SCHEMA_HISTORY));
    }
    Ok(names)
}

/// What `database` says about `role` and its objects (`names`: only
/// these). On a member the shared tables and their policies are left out:
/// they are the catalog's (a member holds tenants' tables only, and what
/// else is named `pf_...` there is nothing the application may use).
fn access_on(
    conn: &mut dyn Connection,
    database: &str,
    role: &str,
    names: Option<&[String]>,
) -> Result<Option<AccessCatalog>, DbError> {
    let Some(mut catalog) = conn.access_catalog(role, names)? else {
        return Ok(None);
    };
    if database != CATALOG {
        catalog
            .objects
            .retain(|o| system_expected(&o.name).is_none());
        catalog.policies.clear();
    }
    Ok(Some(catalog))
}

/// The report of `database`'s catalog against what `tenants` (the ones
/// placed there) and the shared tables need.
fn report(
    dialect: Dialect,
    database: &str,
    role: &str,
    catalog: &AccessCatalog,
    tenants: &Tenants,
) -> Report {
    let mut problems = compare(dialect, role, catalog, tenants);
    if !catalog.role.exists {
        problems.insert(
            0,
            Problem::RoleMissing {
                role: role.to_string(),
            },
        );
    }
    Report {
        database: database.to_string(),
        role: role.to_string(),
        role_exists: catalog.role.exists,
        objects: catalog.objects.len(),
        problems,
    }
}

/// `grants check` on the catalog: the role, and every `pf_...` object
/// (`only`: the named tenants' and the shared ones), compared with what the
/// application may do (with the tenants placed on the catalog). None where
/// the backend has no roles (SQLite: see [`files`]).
pub fn check(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    role: &str,
    only: Option<&[TenantKey]>,
) -> anyhow::Result<Option<Report>> {
    let names = only.map(|keys| names_of(keys, renderer)).transpose()?;
    let Some(catalog) = access_on(conn, CATALOG, role, names.as_deref())? else {
        return Ok(None);
    };
    let tenants = placement(conn)?.remove(CATALOG).unwrap_or_default();
    Ok(Some(report(
        conn.dialect(),
        CATALOG,
        role,
        &catalog,
        &tenants,
    )))
}

/// A database of the fleet that could not be checked or changed, and why
/// (one line, naming it).
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub database: String,
    pub error: String,
}

impl Failed {
    fn new(database: &str, err: &anyhow::Error) -> Failed {
        // A member's connection errors name it already.
        let error = crate::fleet::members::naming_member(database, &crate::error::one_line(err));
        Failed {
            database: database.to_string(),
            error,
        }
    }
}

/// Member databases by name, each with its own connection.
type MemberConnections = Vec<(String, Box<dyn Connection>)>;

/// A connection to each member database that answers; the others in the
/// second list. On SQLite (folders) and without members: none.
fn open_members(
    session: &mut crate::db::Session<'_>,
) -> anyhow::Result<(MemberConnections, Vec<Failed>)> {
    let (mut open, mut failed) = (Vec::new(), Vec::new());
    if session.tenants_apart() {
        return Ok((open, failed));
    }
    let db = session.database();
    for (name, url) in crate::fleet::members::remote(session.system())? {
        match db.connect_member(&name, &url) {
            Ok(conn) => open.push((name, conn)),
            Err(e) => failed.push(Failed::new(&name, &e.into())),
        }
    }
    Ok((open, failed))
}

/// `grants check` over the fleet: the catalog (the shared tables, their
/// policies, the tenants placed there), then every member, one catalog read
/// each, for the tenants the registry places there: the role must exist on
/// each member's server too (roles are per server), hold exactly what it
/// needs on the tenants' tables there, and own nothing nor hold DDL rights
/// there. A member that cannot be reached is in `failed`; the others are
/// checked. None where the backend has no roles.
pub fn check_fleet(
    session: &mut crate::db::Session<'_>,
    role: &str,
) -> anyhow::Result<Option<(Vec<Report>, Vec<Failed>)>> {
    let dialect = session.dialect();
    let mut placed = placement(session.system())?;
    let Some(catalog) = access_on(session.system(), CATALOG, role, None)? else {
        return Ok(None);
    };
    let tenants = placed.remove(CATALOG).unwrap_or_default();
    let mut reports = vec![report(dialect, CATALOG, role, &catalog, &tenants)];
    drop(catalog);
    let (members, mut failed) = open_members(session)?;
    for (name, mut conn) in members {
        let tenants = placed.remove(&name).unwrap_or_default();
        match access_on(conn.as_mut(), &name, role, None) {
            Ok(Some(catalog)) => reports.push(report(dialect, &name, role, &catalog, &tenants)),
            Ok(None) => {}
            Err(e) => failed.push(Failed::new(&name, &e.into())),
        }
    }
    Ok(Some((reports, failed)))
}

// ---------------------------------------------------------------------------
// Statements.

/// One change `grants apply` makes: its statement, and what it changes (for
/// the audit row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `grant`, `revoke`, `enable row security`, `create policy`, ...
    pub action: String,
    pub privileges: Vec<String>,
    pub objects: Vec<String>,
    pub statements: Vec<Statement>,
}

/// Problems `grants apply` cannot repair by itself, and changes it makes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unfixable: Vec<Problem>,
}

/// PostgreSQL's keyword for an object kind in GRANT and REVOKE.
fn pg_object_class(kind: &str) -> &'static str {
    match kind {
        "sequence" => "SEQUENCE",
        "function" => "FUNCTION",
        "procedure" => "PROCEDURE",
        _ => "TABLE",
    }
}

fn plain(sql: String) -> Statement {
    Statement { sql, plsql: false }
}

/// PL/SQL blocks running `statements` with EXECUTE IMMEDIATE, a few dozen
/// per block (one round trip each); with `tolerate`, each inside an inner
/// block that lets that ORA- error through (a REVOKE of what is not granted).
fn oracle_blocks(statements: &[String], tolerate: Option<i32>) -> Vec<Statement> {
    statements
        .chunks(GRANTS_PER_BLOCK)
        .map(|chunk| {
            let mut sql = String::from("BEGIN\n");
            for s in chunk {
                let literal = s.replace('\'', "''");
                match tolerate {
                    None => sql.push_str(&format!("    EXECUTE IMMEDIATE '{literal}';\n")),
                    Some(code) => sql.push_str(&format!(
                        "    BEGIN\n        EXECUTE IMMEDIATE '{literal}';\n    EXCEPTION\n        WHEN OTHERS THEN\n            IF SQLCODE != -{code} THEN\n                RAISE;\n            END IF;\n    END;\n"
                    )),
                }
            }
            sql.push_str("END;");
            Statement { sql, plsql: true }
        })
        .collect()
}

/// GRANT (`grant`) or REVOKE of `privileges` on `objects` (name, kind) to or
/// from `grantee`, batched: one statement per few hundred objects on
/// PostgreSQL, one PL/SQL block per few dozen on Oracle (one object per GRANT
/// there). `grant_option`: REVOKE GRANT OPTION FOR.
pub fn privilege_statements(
    dialect: Dialect,
    grant: bool,
    privileges: &[String],
    objects: &[(String, String)],
    grantee: &str,
    grant_option: bool,
) -> Vec<Statement> {
    let list = privileges.join(", ");
    match dialect {
        Dialect::Postgres => {
            let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (name, kind) in objects {
                by_class
                    .entry(pg_object_class(kind))
                    .or_default()
                    .push(name);
            }
            let mut out = Vec::new();
            for (class, names) in by_class {
                for chunk in names.chunks(OBJECTS_PER_STATEMENT) {
                    let names = chunk.join(", ");
                    out.push(plain(match (grant, grant_option) {
                        (true, _) => format!("GRANT {list} ON {class} {names} TO {grantee}"),
                        (false, false) => {
                            format!("REVOKE {list} ON {class} {names} FROM {grantee}")
                        }
                        (false, true) => format!(
                            "REVOKE GRANT OPTION FOR {list} ON {class} {names} FROM {grantee}"
                        ),
                    }));
                }
            }
            out
        }
        Dialect::Oracle => oracle_blocks(
            &oracle_privilege_sql(grant, privileges, objects, grantee, grant_option),
            None,
        ),
        Dialect::Sqlite => Vec::new(),
    }
}

/// Oracle's GRANTs and REVOKEs, one object each (what [`oracle_blocks`]
/// runs). Oracle has no REVOKE GRANT OPTION: the privilege is revoked and
/// granted again without it.
fn oracle_privilege_sql(
    grant: bool,
    privileges: &[String],
    objects: &[(String, String)],
    grantee: &str,
    grant_option: bool,
) -> Vec<String> {
    let list = privileges.join(", ");
    let mut sql = Vec::new();
    for (name, _) in objects {
        if grant {
            sql.push(format!("GRANT {list} ON {name} TO {grantee}"));
        } else {
            sql.push(format!("REVOKE {list} ON {name} FROM {grantee}"));
            if grant_option {
                sql.push(format!("GRANT {list} ON {name} TO {grantee}"));
            }
        }
    }
    sql
}

/// The statement that creates the role: NOLOGIN on PostgreSQL (the README
/// says how to give the application a login), a role on Oracle.
pub fn create_role_statement(dialect: Dialect, role: &str) -> Option<Statement> {
    match dialect {
        Dialect::Postgres => Some(plain(format!("CREATE ROLE {role} NOLOGIN"))),
        Dialect::Oracle => Some(plain(format!("CREATE ROLE {role}"))),
        Dialect::Sqlite => None,
    }
}

/// The statements system version 6 renders for `table`'s policy.
fn rendered_policy(renderer: &Renderer, table: &str) -> anyhow::Result<Vec<Statement>> {
    let v6: Vec<Statement> = renderer
        .system_migrations()?
        .into_iter()
        .filter(|m| m.version == 6)
        .flat_map(|m| m.statements)
        .collect();
    let policy = policy_name(table);
    Ok(match renderer.dialect() {
        Dialect::Postgres => v6
            .into_iter()
            .filter(|s| {
                s.sql
                    .starts_with(&format!("CREATE POLICY {policy} ON {table}\n"))
            })
            .collect(),
        Dialect::Oracle => v6
            .into_iter()
            .filter(|s| {
                s.plsql
                    && s.sql
                        .contains(&format!("object_name => '{}'", table.to_ascii_uppercase()))
            })
            .collect(),
        Dialect::Sqlite => Vec::new(),
    })
}

fn oracle_rls_call(call: String) -> Statement {
    Statement {
        sql: format!("BEGIN\n    {call};\nEND;"),
        plsql: true,
    }
}

/// What `grants apply` does about `problems`.
pub fn plan(renderer: &Renderer, role: &str, problems: &[Problem]) -> anyhow::Result<Plan> {
    let dialect = renderer.dialect();
    let mut plan = Plan::default();
    // Grants and revokes grouped by (grant?, privileges, grantee, grant option).
    type Key = (bool, Vec<String>, String, bool);
    let mut grouped: BTreeMap<Key, Vec<(String, String)>> = BTreeMap::new();
    let mut policies: Vec<Change> = Vec::new();
    for problem in problems {
        match problem {
            Problem::MissingGrant {
                object,
                kind,
                privileges,
            } => grouped
                .entry((true, privileges.clone(), role.to_string(), false))
                .or_default()
                .push((object.clone(), kind.clone())),
            Problem::ExtraPrivilege {
                object,
                kind,
                privileges,
                via,
                grant_option,
            } if revoke_from(via, role).is_some() => {
                let grantee = revoke_from(via, role).unwrap_or_default();
                grouped
                    .entry((false, privileges.clone(), grantee, *grant_option))
                    .or_default()
                    .push((object.clone(), kind.clone()));
            }
            Problem::ExtraColumnPrivilege {
                object,
                kind,
                privileges,
                via,
            } if dialect == Dialect::Postgres && revoke_from(via, role).is_some() => {
                let grantee = revoke_from(via, role).unwrap_or_default();
                policies.push(Change {
                    action: format!("revoke from {grantee}"),
                    privileges: privileges.clone(),
                    objects: vec![object.clone()],
                    statements: vec![plain(format!(
                        "REVOKE {} ON {} {object} FROM {grantee}",
                        privileges.join(", "),
                        pg_object_class(kind)
                    ))],
                });
            }
            Problem::CreateRight {
                on,
                name,
                via,
                revocable: true,
            } if dialect == Dialect::Postgres && revoke_from(via, role).is_some() => {
                let grantee = revoke_from(via, role).unwrap_or_default();
                policies.push(Change {
                    action: format!("revoke from {grantee}"),
                    privileges: vec!["CREATE".into()],
                    objects: vec![format!("{on} {name}")],
                    statements: vec![plain(format!(
                        "REVOKE CREATE ON {} {} FROM {grantee}",
                        on.to_ascii_uppercase(),
                        quote_pg(name)
                    ))],
                });
            }
            Problem::RowSecurityDisabled { table } => policies.push(Change {
                action: "enable row security".into(),
                privileges: Vec::new(),
                objects: vec![table.clone()],
                statements: vec![plain(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))],
            }),
            Problem::RowSecurityForced { table } => policies.push(Change {
                action: "unforce row security".into(),
                privileges: Vec::new(),
                objects: vec![table.clone()],
                statements: vec![plain(format!(
                    "ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"
                ))],
            }),
            Problem::PolicyMissing { table, policy } | Problem::PolicyChanged { table, policy, .. } => {
                let mut statements = Vec::new();
                match dialect {
                    Dialect::Postgres => {
                        statements.push(plain(format!("DROP POLICY IF EXISTS {policy} ON {table}")))
                    }
                    Dialect::Oracle if matches!(problem, Problem::PolicyChanged { .. }) => {
                        statements.push(oracle_rls_call(format!(
                            "DBMS_RLS.DROP_POLICY(object_name => '{}', policy_name => '{}')",
                            table.to_ascii_uppercase(),
                            policy.to_ascii_uppercase()
                        )))
                    }
                    _ => {}
                }
                let create = rendered_policy(renderer, table)?;
                if create.is_empty() {
                    plan.unfixable.push(problem.clone());
                    continue;
                }
                statements.extend(create);
                policies.push(Change {
                    action: "create policy".into(),
                    privileges: Vec::new(),
                    objects: vec![format!("{policy} on {table}")],
                    statements,
                });
            }
            Problem::PolicyDisabled { table, policy } => policies.push(Change {
                action: "enable policy".into(),
                privileges: Vec::new(),
                objects: vec![format!("{policy} on {table}")],
                statements: vec![oracle_rls_call(format!(
                    "DBMS_RLS.ENABLE_POLICY(object_name => '{}', policy_name => '{}', enable => TRUE)",
                    table.to_ascii_uppercase(),
                    policy.to_ascii_uppercase()
                ))],
            }),
            Problem::ExtraPolicy { table, policy } => policies.push(Change {
                action: "drop policy".into(),
                privileges: Vec::new(),
                objects: vec![format!("{policy} on {table}")],
                statements: vec![plain(format!("DROP POLICY {} ON {table}", quote_pg(policy)))],
            }),
            other => plan.unfixable.push(other.clone()),
        }
    }
    for ((grant, privileges, grantee, grant_option), objects) in grouped {
        for chunk in objects.chunks(OBJECTS_PER_STATEMENT) {
            plan.changes.push(Change {
                action: match (grant, grant_option) {
                    (true, _) => format!("grant to {grantee}"),
                    (false, false) => format!("revoke from {grantee}"),
                    (false, true) => format!("revoke grant option from {grantee}"),
                },
                privileges: privileges.clone(),
                objects: chunk.iter().map(|(n, _)| n.clone()).collect(),
                statements: privilege_statements(
                    dialect,
                    grant,
                    &privileges,
                    chunk,
                    &grantee,
                    grant_option,
                ),
            });
        }
    }
    plan.changes.extend(policies);
    Ok(plan)
}

/// A policy name for a statement: as is when it is a plain lower-case
/// identifier, else quoted (a policy someone else made).
fn quote_pg(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

// ---------------------------------------------------------------------------
// Applying.

/// What `grants apply` did (or, with `dry_run`, would do) on one database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// [`CATALOG`], or the member database changed.
    pub database: String,
    pub role: String,
    pub created_role: bool,
    pub changes: Vec<Change>,
    /// What it cannot repair itself, with the fix in each line.
    pub unfixable: Vec<Problem>,
}

/// The role is missing on `databases` and `--create-role` was not given.
pub fn role_missing(role: &str, databases: &[String]) -> UsageError {
    let members: Vec<&str> = databases
        .iter()
        .map(String::as_str)
        .filter(|d| *d != CATALOG)
        .collect();
    let fix = "`pathfinder-db grants apply --create-role` creates it (NOLOGIN), or create it yourself and run again (the role is the app_role setting); nothing was changed";
    UsageError::new(if members.is_empty() {
        format!("role {role} does not exist: {fix}")
    } else {
        format!(
            "role {role} does not exist on {}member(s) {} (roles are per server: each member's server needs it too): {fix}",
            if databases.iter().any(|d| d == CATALOG) {
                "the catalog and "
            } else {
                ""
            },
            members.join(", ")
        )
    })
}

/// `grants apply` over the fleet: creates the role when asked and missing,
/// then makes every grant and policy match on the catalog (the shared
/// tables, their policies, the tenants placed there) and then on each member
/// (the tenants placed there), each database in transactions of its own.
/// The role must exist everywhere unless `create_role`: checked before
/// anything changes. Each change is audited in the catalog's log: on
/// PostgreSQL in the transaction that makes it (a member's change commits
/// inside the catalog's transaction of its audit rows), on Oracle right
/// after it (a GRANT commits by itself). A member that cannot be reached, or
/// fails, is in `failed`; the others are done. A failure on the catalog
/// ends the command before any member is changed. `dry_run`: nothing is
/// changed, the changes are returned. None where the backend has no roles.
pub fn apply(
    session: &mut crate::db::Session<'_>,
    renderer: &Renderer,
    role: &str,
    create_role: bool,
    dry_run: bool,
) -> anyhow::Result<Option<(Vec<Applied>, Vec<Failed>)>> {
    let mut placed = placement(session.system())?;
    let (mut members, mut failed) = open_members(session)?;
    // Whether the role exists, everywhere (no objects read), before any change.
    let none: &[String] = &[];
    let Some(on_catalog) = access_on(session.system(), CATALOG, role, Some(none))? else {
        return Ok(None);
    };
    if !create_role {
        let mut missing = Vec::new();
        if !on_catalog.role.exists {
            missing.push(CATALOG.to_string());
        }
        let mut reachable = Vec::new();
        for (name, mut conn) in members {
            match access_on(conn.as_mut(), &name, role, Some(none)) {
                Ok(found) => {
                    if found.is_some_and(|c| !c.role.exists) {
                        missing.push(name.clone());
                    }
                    reachable.push((name, conn));
                }
                Err(e) => failed.push(Failed::new(&name, &e.into())),
            }
        }
        members = reachable;
        if !missing.is_empty() {
            return Err(role_missing(role, &missing).into());
        }
    }
    let tenants = placed.remove(CATALOG).unwrap_or_default();
    let mut done = vec![apply_on(
        session.system(),
        None,
        CATALOG,
        renderer,
        (role, create_role, dry_run),
        &tenants,
    )?];
    for (name, mut conn) in members {
        let tenants = placed.remove(&name).unwrap_or_default();
        match apply_on(
            conn.as_mut(),
            Some(session.system()),
            &name,
            renderer,
            (role, create_role, dry_run),
            &tenants,
        ) {
            Ok(applied) => done.push(applied),
            Err(e) => failed.push(Failed::new(&name, &e)),
        }
    }
    Ok(Some((done, failed)))
}

/// `grants apply` on one database `conn` (`database`), for the tenants
/// placed there; audited on `log` (the catalog) when that is another
/// connection, else on `conn`.
fn apply_on(
    conn: &mut dyn Connection,
    mut log: Option<&mut dyn Connection>,
    database: &str,
    renderer: &Renderer,
    (role, create_role, dry_run): (&str, bool, bool),
    tenants: &Tenants,
) -> anyhow::Result<Applied> {
    let dialect = conn.dialect();
    let read = |conn: &mut dyn Connection| -> anyhow::Result<AccessCatalog> {
        access_on(conn, database, role, None)?
            .ok_or_else(|| anyhow::anyhow!("{dialect} has no roles"))
    };
    // Audit rows a killed run staged on this member reach the log first.
    if let Some(log) = reborrow(&mut log).filter(|_| !dry_run) {
        audit::flush_member_left_by(conn, log, "grants")?;
    }
    let mut catalog = read(conn)?;
    let mut applied = Applied {
        database: database.to_string(),
        role: role.to_string(),
        ..Applied::default()
    };
    if !catalog.role.exists {
        if !create_role {
            return Err(role_missing(role, &[database.to_string()]).into());
        }
        let statement = create_role_statement(dialect, role)
            .ok_or_else(|| anyhow::anyhow!("{dialect} has no roles"))?;
        let change = Change {
            action: "create role".into(),
            privileges: Vec::new(),
            objects: vec![role.to_string()],
            statements: vec![statement],
        };
        if dry_run {
            applied.changes.push(change);
            // What the new role would need: everything it may use.
            catalog.role.exists = true;
        } else {
            run_audited(
                conn,
                reborrow(&mut log),
                database,
                role,
                std::slice::from_ref(&change),
            )
            .map_err(|e| audit_failure(conn, reborrow(&mut log), database, role, e))?;
            applied.created_role = true;
            applied.changes.push(change);
            catalog = read(conn)?;
        }
    }
    let problems = compare(dialect, role, &catalog, tenants);
    drop(catalog);
    let plan = plan(renderer, role, &problems)?;
    if !dry_run {
        // A batch that fails (a tenant dropped since the catalog was read,
        // say) is rolled back where DDL is transactional; the batches before
        // it stay. Running the command again finishes the rest.
        for batch in plan.changes.chunks(CHANGES_PER_COMMIT) {
            run_audited(conn, reborrow(&mut log), database, role, batch)
                .map_err(|e| audit_failure(conn, reborrow(&mut log), database, role, e))?;
        }
    }
    applied.changes.extend(plan.changes);
    applied.unfixable = plan.unfixable;
    Ok(applied)
}

/// The catalog's connection for audit rows, borrowed for one call.
fn reborrow<'b>(log: &'b mut Option<&mut dyn Connection>) -> Option<&'b mut dyn Connection> {
    match log {
        Some(log) => Some(&mut **log),
        None => None,
    }
}

/// Records a failed `grants apply` on `database` (after the rollback, in a
/// transaction of its own on the catalog: `log`, else `conn`, as every
/// command's failures are) and hands the error back.
fn audit_failure(
    conn: &mut dyn Connection,
    log: Option<&mut dyn Connection>,
    database: &str,
    role: &str,
    err: anyhow::Error,
) -> anyhow::Error {
    let mut entry = AuditEntry::new("grants.apply", "role", role, "grants");
    entry.error = Some(crate::error::one_line(&err));
    let details = serde_json::json!({ "database": database }).to_string();
    let log: &mut dyn Connection = match log {
        Some(log) => log,
        None => conn,
    };
    if !log.is_closed() {
        let _ = Tx::begin(log).and_then(|mut tx| {
            audit::write_details(&mut *tx, &entry, Some(&details))?;
            tx.commit()
        });
    }
    err
}

/// The audit row of one change on `database`.
fn change_entry(role: &str, database: &str, change: &Change) -> (AuditEntry, String) {
    let entry = AuditEntry::new(
        match change.action.as_str() {
            "create role" => "grants.create_role",
            a if a.starts_with("grant") => "grants.grant",
            a if a.starts_with("revoke") => "grants.revoke",
            _ => "grants.policy",
        },
        "role",
        role,
        "grants",
    );
    let details = serde_json::json!({
        "database": database,
        "change": change.action,
        "privileges": change.privileges,
        "objects": change.objects,
    })
    .to_string();
    (entry, details)
}

/// Runs `changes` on `conn` with an audit row each, for `log` (the catalog,
/// for a member's changes) or else on `conn`: in one transaction where DDL
/// is transactional (a member's rows staged on it in that transaction, then
/// copied to `log`), else each change followed by its audit row's commit.
fn run_audited(
    conn: &mut dyn Connection,
    log: Option<&mut dyn Connection>,
    database: &str,
    role: &str,
    changes: &[Change],
) -> anyhow::Result<()> {
    if conn.dialect().transactional_ddl() {
        // A member's rows are staged on it, in the transaction of the
        // changes (a kill cannot part them), then copied to the catalog's log.
        let mut staged = Vec::new();
        let mut tx = Tx::begin(conn)?;
        for change in changes {
            tx.run_statements(&change.statements)?;
            let (entry, details) = change_entry(role, database, change);
            if log.is_some() {
                staged.push(audit::stage(&mut *tx, &entry, Some(&details))?);
            } else {
                audit::write_details(&mut *tx, &entry, Some(&details))?;
            }
        }
        tx.commit()?;
        conn.take_staged();
        if let Some(log) = log {
            audit::flush_member_ids(conn, log, &staged)?;
        }
    } else {
        let mut log = log;
        for change in changes {
            conn.run_statements(&change.statements)?;
            let (entry, details) = change_entry(role, database, change);
            let audit_to: &mut dyn Connection = match log.as_mut() {
                Some(l) => &mut **l,
                None => &mut *conn,
            };
            let mut tx = Tx::begin(audit_to)?;
            audit::write_details(&mut *tx, &entry, Some(&details))?;
            tx.commit()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Grants that follow what pathfinder-db creates.

/// The tables and materialized views `statements` create.
/// Each once (a version may create again what an earlier one made: one
/// GRANT must not name an object twice).
fn created_objects(statements: &[Statement]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    statements
        .iter()
        .filter_map(|s| {
            let words: Vec<&str> = s.sql.split_whitespace().take(4).collect();
            let name = match words.as_slice() {
                ["CREATE", "TABLE", name, ..] => *name,
                ["CREATE", "MATERIALIZED", "VIEW", name] => *name,
                _ => return None,
            };
            Some(name.trim_end_matches('(').to_string())
        })
        .filter(|name| seen.insert(name.clone()))
        .collect()
}

/// The system objects the application may use (what the system schema
/// creates, and Oracle's context package).
fn system_objects(renderer: &Renderer) -> anyhow::Result<Vec<String>> {
    let statements: Vec<Statement> = renderer
        .system_migrations()?
        .into_iter()
        .flat_map(|m| m.statements)
        .collect();
    let mut names = created_objects(&statements);
    if renderer.dialect() == Dialect::Oracle {
        names.push(ORACLE_CONTEXT_PACKAGE.to_string());
    }
    Ok(names)
}

/// Grants `role` what it may do with `names`, grouped by privileges, with
/// one audit row (`details`: what was granted) in the caller's transaction.
fn grant_objects(
    conn: &mut dyn Connection,
    role: &str,
    names: &[(String, &'static [&'static str])],
    entry: AuditEntry,
) -> anyhow::Result<()> {
    let dialect = conn.dialect();
    let mut by_privileges: BTreeMap<&'static [&'static str], Vec<(String, String)>> =
        BTreeMap::new();
    for (name, privileges) in names {
        if !privileges.is_empty() {
            let kind = if name == ORACLE_CONTEXT_PACKAGE {
                "package"
            } else {
                "table"
            };
            by_privileges
                .entry(privileges)
                .or_default()
                .push((name.clone(), kind.into()));
        }
    }
    if by_privileges.is_empty() {
        return Ok(());
    }
    let mut statements = Vec::new();
    let mut oracle = Vec::new();
    let mut granted = serde_json::Map::new();
    for (privileges, objects) in &by_privileges {
        let privileges: Vec<String> = privileges.iter().map(|p| p.to_string()).collect();
        match dialect {
            // One block (one round trip) for all of them.
            Dialect::Oracle => oracle.extend(oracle_privilege_sql(
                true,
                &privileges,
                objects,
                role,
                false,
            )),
            _ => statements.extend(privilege_statements(
                dialect,
                true,
                &privileges,
                objects,
                role,
                false,
            )),
        }
        granted.insert(
            privileges.join(", "),
            objects.iter().map(|(n, _)| n.clone()).collect(),
        );
    }
    statements.extend(oracle_blocks(&oracle, None));
    conn.run_statements(&statements)?;
    let details = serde_json::json!({"role": role, "granted": granted}).to_string();
    audit_grant(conn, &entry, &details)?;
    Ok(())
}

/// Writes the audit row of a grant made on `conn`, in its transaction: in
/// `pf_audit_log` on the catalog; on a member database, which has none,
/// staged in the member's `pf_audit_stage` (as a sweep's rows there are),
/// from where the tenant's next flush copies it to the catalog's log.
fn audit_grant(conn: &mut dyn Connection, entry: &AuditEntry, details: &str) -> anyhow::Result<()> {
    if conn.is_member() {
        audit::stage(conn, entry, Some(details))?;
    } else {
        audit::write_details(conn, entry, Some(details))?;
    }
    Ok(())
}

/// After the system schema was created or upgraded (in its transaction):
/// grants the application role, when it exists, what it may use of it.
pub fn grant_system(conn: &mut dyn Connection, renderer: &Renderer) -> anyhow::Result<()> {
    let Some(role) = conn.app_role()? else {
        return Ok(());
    };
    let names: Vec<(String, &'static [&'static str])> = system_objects(renderer)?
        .into_iter()
        .filter_map(|n| system_expected(&n).map(|p| (n, p)))
        .collect();
    let entry = AuditEntry::new("grants.grant", "schema", "system", "init");
    grant_objects(conn, &role, &names, entry)
}

/// After a tenant's migrations up to `version` were applied (provision,
/// migrate, import; in the same transaction where DDL is transactional):
/// grants the application role, when it exists, what it may do with the
/// tenant's tables and career summary.
pub fn grant_tenant(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
    version: u32,
    (username, user_id, command): (&str, Option<&str>, &str),
) -> anyhow::Result<()> {
    let Some(role) = conn.app_role()? else {
        return Ok(());
    };
    let statements: Vec<Statement> = renderer
        .tenant_migrations(key)?
        .into_iter()
        .filter(|m| m.version <= version)
        .flat_map(|m| m.statements)
        .collect();
    let prefix = key.prefix();
    let names: Vec<(String, &'static [&'static str])> = created_objects(&statements)
        .into_iter()
        .filter_map(|n| {
            let privileges = tenant_expected(n.strip_prefix(&prefix)?);
            Some((n, privileges))
        })
        .collect();
    let mut entry = AuditEntry::new("grants.grant", "tenant", username, command);
    entry.user_id = user_id.map(str::to_string);
    grant_objects(conn, &role, &names, entry)
}

/// After a sweep (or deprovision, import, restore) created the archive
/// table `archive`: the application may read it.
pub fn grant_archive(conn: &mut dyn Connection, archive: &str) -> anyhow::Result<()> {
    let Some(role) = conn.app_role()? else {
        return Ok(());
    };
    let entry = AuditEntry::new("grants.grant", "table", archive, "archive");
    grant_objects(conn, &role, &[(archive.to_string(), READ)], entry)
}

/// When a tenant is deprovisioned with its archives kept: the application
/// may no longer read them (what it may do with a deprovisioned tenant's
/// objects is nothing).
pub fn revoke_kept_archives(
    conn: &mut dyn Connection,
    archives: &[String],
    (username, user_id, command): (&str, Option<&str>, &str),
) -> anyhow::Result<()> {
    let Some(role) = conn.app_role()? else {
        return Ok(());
    };
    if archives.is_empty() {
        return Ok(());
    }
    let statements = match conn.dialect() {
        Dialect::Postgres => vec![plain(format!(
            "REVOKE ALL ON TABLE {} FROM {role}",
            archives.join(", ")
        ))],
        // ORA-01927: nothing was granted on it (the role came later).
        Dialect::Oracle => oracle_blocks(
            &archives
                .iter()
                .map(|a| format!("REVOKE SELECT ON {a} FROM {role}"))
                .collect::<Vec<_>>(),
            Some(1927),
        ),
        Dialect::Sqlite => return Ok(()),
    };
    conn.run_statements(&statements)?;
    let mut entry = AuditEntry::new("grants.revoke", "tenant", username, command);
    entry.user_id = user_id.map(str::to_string);
    let details = serde_json::json!({"role": role, "revoked": {"ALL": archives}}).to_string();
    audit_grant(conn, &entry, &details)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// doctor and verify.

/// How many problems a one-line summary names.
const SHOWN: usize = 3;

/// The problems in one line: the first few, and how many more.
pub fn summary(report: &Report) -> String {
    let mut text = report
        .problems
        .iter()
        .take(SHOWN)
        .map(|p| p.describe(&report.role))
        .collect::<Vec<_>>()
        .join("; ");
    if report.problems.len() > SHOWN {
        text.push_str(&format!(
            "; and {} more (`pathfinder-db grants check` lists them)",
            report.problems.len() - SHOWN
        ));
    }
    text
}

/// `doctor`'s line about the application role: its grants and the
/// row-level security policies (SQLite: the files' modes). None for a
/// database without a configured role (a test's recording connection).
/// A role that does not exist yet is reported, not failed: the application
/// then still connects as it did before this version.
pub fn doctor_check(
    session: &mut crate::db::Session<'_>,
    renderer: &Renderer,
) -> Option<crate::db::Check> {
    use crate::db::Check;
    const CHECK: &str = "app role";
    if session.database().sqlite_paths().is_some() {
        return Some(
            match files::check_deployment(session).map(Option::unwrap_or_default) {
                Ok((n, open)) if open.is_empty() => Check::ok(
                    CHECK,
                    format!(
                        "SQLite has no roles; its {n} file(s) and folder(s) are readable by their owner only"
                    ),
                ),
                Ok((_, open)) => Check::fail(
                    CHECK,
                    format!(
                        "{} SQLite file(s) or folder(s) others may use: {}",
                        open.len(),
                        open.iter()
                            .take(SHOWN)
                            .map(files::OpenFile::describe)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    "`pathfinder-db grants apply` makes them readable by their owner only (0600, folders 0700)",
                ),
                Err(e) => Check::fail(
                    CHECK,
                    format!("cannot read the files' modes: {e}"),
                    "see the message",
                ),
            },
        );
    }
    let role = session.database().app_role()?.to_string();
    Some(match check(session.system(), renderer, &role, None) {
        Ok(None) => return None,
        Ok(Some(report)) if !report.role_exists => Check::ok(
            CHECK,
            format!(
                "role {role} does not exist: the application has no role of its own yet (it connects with the owner's rights); `pathfinder-db grants apply --create-role` creates it"
            ),
        ),
        Ok(Some(report)) if report.ok() => Check::ok(
            CHECK,
            format!(
                "role {role}: grants on {} object(s) and row-level security match",
                report.objects
            ),
        ),
        Ok(Some(report)) => Check::fail(
            CHECK,
            format!("{} problem(s): {}", report.problems.len(), summary(&report)),
            "`pathfinder-db grants apply` repairs grants and policies (`grants check` lists every problem)",
        ),
        Err(e) => Check::fail(
            CHECK,
            crate::error::one_line(&e),
            "grant this user access to the catalog of its schema",
        ),
    })
}

// ---------------------------------------------------------------------------
// SQLite: files readable by their owner only.

/// SQLite has no roles: what it can enforce is that its files are private
/// to the user that owns them. The main file, its `-wal`/`-shm`, the tenant
/// folder and every file in it (tenant files with their `-wal`/`-shm`,
/// lock files) are created 0600 (folders 0700) whatever the umask; these
/// check and repair ones made otherwise (by an older release, or by hand).
pub mod files {
    use std::path::{Path, PathBuf};

    use serde::Serialize;

    /// A file or folder others may read or write.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct OpenFile {
        pub path: PathBuf,
        pub mode: u32,
        pub folder: bool,
        /// The owner's user id when it is another user than the one running
        /// the check (who may then replace the files; only a chown repairs it).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub other_owner: Option<u32>,
    }

    impl OpenFile {
        pub fn describe(&self) -> String {
            if let Some(uid) = self.other_owner {
                return format!(
                    "{} {} belongs to user id {uid}, not to the user running pathfinder-db: that user may replace or delete the tenant files: chown it to this user",
                    if self.folder { "folder" } else { "file" },
                    self.path.display(),
                );
            }
            format!(
                "{} {} is mode {:04o}: group or others may {} it",
                if self.folder { "folder" } else { "file" },
                self.path.display(),
                self.mode,
                if self.mode & 0o022 != 0 {
                    "change"
                } else {
                    "read"
                }
            )
        }
    }

    /// The mode a file (0600) or folder (0700) must have at most.
    pub const FILE_MODE: u32 = 0o600;
    pub const FOLDER_MODE: u32 = 0o700;

    /// Mode, whether a folder, and the owner when it is not the running user.
    #[cfg(unix)]
    fn mode_of(path: &Path) -> Option<(u32, bool, Option<u32>)> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.file_type().is_symlink() {
            return None;
        }
        let me = crate::config::running_uid();
        let other = (meta.uid() != me).then_some(meta.uid());
        Some((meta.permissions().mode() & 0o777, meta.is_dir(), other))
    }

    #[cfg(not(unix))]
    fn mode_of(_path: &Path) -> Option<(u32, bool, Option<u32>)> {
        None
    }

    fn open(path: &Path) -> Option<OpenFile> {
        let (mode, folder, other_owner) = mode_of(path)?;
        (mode & 0o077 != 0 || other_owner.is_some()).then(|| OpenFile {
            path: path.to_path_buf(),
            mode,
            folder,
            other_owner,
        })
    }

    /// The database's files that group or others may use: the main file
    /// (and its `-wal`, `-shm`), each tenant folder (the catalog's, every
    /// member's) and what it holds.
    pub fn check(main: &Path, folders: &[PathBuf]) -> std::io::Result<(usize, Vec<OpenFile>)> {
        let mut paths: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", main.display())))
            .filter(|p| p.exists())
            .collect();
        for folder in folders.iter().filter(|f| f.is_dir()) {
            paths.push(folder.to_path_buf());
            let mut inside: Vec<PathBuf> = std::fs::read_dir(folder)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            inside.sort();
            paths.extend(inside);
        }
        let open_ones = paths.iter().filter_map(|p| open(p)).collect();
        Ok((paths.len(), open_ones))
    }

    /// [`check`] on a SQLite deployment: the main file, the catalog's
    /// tenant folder and every member folder. None elsewhere.
    pub fn check_deployment(
        session: &mut crate::db::Session<'_>,
    ) -> anyhow::Result<Option<(usize, Vec<OpenFile>)>> {
        let Some((main, _)) = session.database().sqlite_paths() else {
            return Ok(None);
        };
        let main = main.to_path_buf();
        let folders: Vec<PathBuf> = crate::fleet::members::sqlite_folders(session)?
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        Ok(Some(check(&main, &folders)?))
    }

    /// Makes `found` private (0600, folders 0700); another user's are left
    /// (a chown is the owner's and a DBA's decision).
    pub fn repair(found: &[OpenFile]) -> std::io::Result<()> {
        #[cfg(unix)]
        for f in found.iter().filter(|f| f.other_owner.is_none()) {
            use std::os::unix::fs::PermissionsExt;
            let mode = if f.folder { FOLDER_MODE } else { FILE_MODE };
            std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = found;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{HeldPrivilege, PolicyFacts, RoleFacts};

    /// The statements of a plan, in order.
    fn planned_sql(plan: &Plan) -> Vec<&str> {
        plan.changes
            .iter()
            .flat_map(|c| &c.statements)
            .map(|s| s.sql.as_str())
            .collect()
    }

    fn tenants() -> Tenants {
        HashMap::from([("alice".to_string(), true), ("gone".to_string(), false)])
    }

    #[test]
    fn what_the_application_may_do_by_object() {
        let t = tenants();
        assert_eq!(expected("pf_users", &t), DML);
        assert_eq!(expected("pf_user_sessions", &t), DML);
        assert_eq!(expected("pf_audit_log", &t), APPEND);
        assert_eq!(expected("pf_encryption_keys", &t), READ);
        assert_eq!(expected("pf_ref_skills_catalog", &t), READ);
        assert_eq!(expected("pf_request_context", &t), EXECUTE);
        for nothing in [
            "pf_tenants",
            "pf_deployment",
            "pf_data_retention_policies",
            "pf_audit_log_archive",
            "refinery_schema_history",
            "pf_user_alice_schema_history",
            "pf_own_rows_predicate",
            // A tenant the registry does not know, and a deprovisioned one.
            "pf_user_bob_skills",
            "pf_user_gone_skills_archive",
        ] {
            assert_eq!(expected(nothing, &t), NOTHING, "{nothing}");
        }
        assert_eq!(expected("pf_user_alice_skills", &t), DML);
        assert_eq!(expected("pf_user_alice_skills_progression", &t), DML);
        assert_eq!(expected("pf_user_alice_career_summary", &t), READ);
        assert_eq!(expected("pf_user_alice_chat_messages_archive", &t), READ);
    }

    #[test]
    fn role_names_are_plain_identifiers() {
        assert!(check_role_name("pathfinder_app", "x").is_ok());
        for bad in ["", "Pathfinder", "pg_app", "public", "a-b", "1app", "a b"] {
            assert!(check_role_name(bad, "x").is_err(), "{bad}");
        }
        assert!(check_role_name(&"a".repeat(64), "x").is_err());
    }

    fn held(privilege: &str, via: &str, grantable: bool) -> HeldPrivilege {
        HeldPrivilege {
            privilege: privilege.into(),
            via: via.into(),
            grantable,
            column: None,
        }
    }

    fn object(name: &str, privileges: Vec<HeldPrivilege>) -> ObjectAccess {
        ObjectAccess {
            name: name.into(),
            kind: "table".into(),
            privileges,
            row_security: OWN_ROWS.iter().any(|(t, _)| *t == name),
            row_security_forced: false,
            owned_by_role: false,
        }
    }

    fn pg_policy(table: &str, column: &str) -> PolicyFacts {
        // As PostgreSQL prints the expression back.
        let e = format!(
            "(({column})::text = NULLIF(current_setting('pathfinder.user_id'::text, true), ''::text))"
        );
        PolicyFacts {
            table: table.into(),
            name: policy_name(table),
            command: "ALL".into(),
            permissive: true,
            enabled: true,
            using: Some(e.clone()),
            check: Some(e),
            roles: vec!["public".into()],
        }
    }

    fn clean_catalog() -> AccessCatalog {
        let dml = || {
            DML.iter()
                .map(|p| held(p, "role", false))
                .collect::<Vec<_>>()
        };
        AccessCatalog {
            role: RoleFacts {
                exists: true,
                ..RoleFacts::default()
            },
            objects: vec![
                object("pf_users", dml()),
                object("pf_user_sessions", dml()),
                object(
                    "pf_audit_log",
                    vec![held("SELECT", "role", false), held("INSERT", "role", false)],
                ),
                object("pf_encryption_keys", vec![held("SELECT", "role", false)]),
                object("pf_tenants", vec![]),
                object("pf_user_alice_skills", dml()),
                object(
                    "pf_user_alice_career_summary",
                    vec![held("SELECT", "role", false)],
                ),
                object("pf_user_alice_schema_history", vec![]),
            ],
            policies: OWN_ROWS.iter().map(|(t, c)| pg_policy(t, c)).collect(),
        }
    }

    #[test]
    fn a_clean_catalog_has_no_problems() {
        assert_eq!(
            compare(Dialect::Postgres, "app", &clean_catalog(), &tenants()),
            vec![]
        );
    }

    #[test]
    fn every_kind_of_drift_is_found() {
        let mut c = clean_catalog();
        // DELETE on the audit log, TRUNCATE through PUBLIC on the registry,
        // INSERT missing on a tenant table, a grant option.
        c.objects[2].privileges.push(held("DELETE", "role", false));
        c.objects[4]
            .privileges
            .push(held("TRUNCATE", "PUBLIC", false));
        c.objects[5].privileges.retain(|p| p.privilege != "INSERT");
        c.objects[3].privileges[0].grantable = true;
        // Row security off on pf_users; an extra permissive policy; the
        // sessions policy widened.
        c.objects[0].row_security = false;
        c.policies.push(PolicyFacts {
            name: "everyone".into(),
            using: Some("true".into()),
            ..pg_policy("pf_users", "id")
        });
        c.policies[1].using = Some("true".into());
        c.role.schema_create = vec!["PUBLIC".into()];
        c.role.bypass_rls = true;
        c.objects[6].owned_by_role = true;
        let problems = compare(Dialect::Postgres, "app", &c, &tenants());
        let has = |p: Problem| assert!(problems.contains(&p), "{p:?} not in {problems:#?}");
        has(Problem::ExtraPrivilege {
            object: "pf_audit_log".into(),
            kind: "table".into(),
            privileges: vec!["DELETE".into()],
            via: "role".into(),
            grant_option: false,
        });
        has(Problem::ExtraPrivilege {
            object: "pf_tenants".into(),
            kind: "table".into(),
            privileges: vec!["TRUNCATE".into()],
            via: "PUBLIC".into(),
            grant_option: false,
        });
        has(Problem::ExtraPrivilege {
            object: "pf_encryption_keys".into(),
            kind: "table".into(),
            privileges: vec!["SELECT".into()],
            via: "role".into(),
            grant_option: true,
        });
        has(Problem::MissingGrant {
            object: "pf_user_alice_skills".into(),
            kind: "table".into(),
            privileges: vec!["INSERT".into()],
        });
        has(Problem::RowSecurityDisabled {
            table: "pf_users".into(),
        });
        has(Problem::ExtraPolicy {
            table: "pf_users".into(),
            policy: "everyone".into(),
        });
        assert!(problems.iter().any(|p| matches!(p,
            Problem::PolicyChanged { table, .. } if table == "pf_user_sessions")));
        has(Problem::Owns {
            object: "pf_user_alice_career_summary".into(),
        });
        assert_eq!(
            problems
                .iter()
                .filter(|p| matches!(p, Problem::DdlRights { .. }))
                .count(),
            1,
            "{problems:#?}"
        );
        has(Problem::CreateRight {
            on: "schema".into(),
            name: String::new(),
            via: "PUBLIC".into(),
            revocable: false,
        });
        assert_eq!(problems.len(), 10, "{problems:#?}");

        // The plan repairs all but the role's own attributes and ownership,
        // in few statements.
        let renderer = Renderer::new(Dialect::Postgres, None).unwrap();
        let plan = plan(&renderer, "app", &problems).unwrap();
        assert_eq!(plan.unfixable.len(), 3, "{:#?}", plan.unfixable);
        let sql = planned_sql(&plan);
        for want in [
            "REVOKE DELETE ON TABLE pf_audit_log FROM app",
            "REVOKE TRUNCATE ON TABLE pf_tenants FROM PUBLIC",
            "REVOKE GRANT OPTION FOR SELECT ON TABLE pf_encryption_keys FROM app",
            "GRANT INSERT ON TABLE pf_user_alice_skills TO app",
            "ALTER TABLE pf_users ENABLE ROW LEVEL SECURITY",
            "DROP POLICY everyone ON pf_users",
            "DROP POLICY IF EXISTS pf_user_sessions_own_rows ON pf_user_sessions",
        ] {
            assert!(sql.contains(&want), "{want} not in {sql:#?}");
        }
        assert!(
            sql.iter()
                .any(|s| s
                    .starts_with("CREATE POLICY pf_user_sessions_own_rows ON pf_user_sessions\n")),
            "{sql:#?}"
        );
    }

    #[test]
    fn column_privileges_members_and_create_rights_are_found_and_revoked() {
        let mut c = clean_catalog();
        let column = |privilege: &str, via: &str, col: &str| HeldPrivilege {
            column: Some(col.into()),
            ..held(privilege, via, false)
        };
        // Column grants on the audit log (to the role, to PUBLIC), a grant
        // to a login that is a member of the role, and a view over pf_users
        // that is not the tool's.
        c.objects[2].privileges.extend([
            column("UPDATE", "role", "user_id"),
            column("UPDATE", "role", "action"),
            column("SELECT", "PUBLIC", "details"),
        ]);
        c.objects[4]
            .privileges
            .push(held("SELECT", "member:web", false));
        c.objects.push(ObjectAccess {
            kind: "view".into(),
            ..object("v_users", vec![held("SELECT", "role", false)])
        });
        c.role.database = "main".into();
        c.role.schema = "public".into();
        c.role.database_create = vec!["role".into()];
        c.role.may_revoke_database = true;
        c.role.members = vec![crate::db::MemberFacts {
            name: "web".into(),
            bypass_rls: true,
            schema_create: true,
            ..Default::default()
        }];
        let problems = compare(Dialect::Postgres, "app", &c, &tenants());
        let has = |p: Problem| assert!(problems.contains(&p), "{p:?} not in {problems:#?}");
        has(Problem::ExtraColumnPrivilege {
            object: "pf_audit_log".into(),
            kind: "table".into(),
            privileges: vec!["UPDATE (action, user_id)".into()],
            via: "role".into(),
        });
        has(Problem::ExtraColumnPrivilege {
            object: "pf_audit_log".into(),
            kind: "table".into(),
            privileges: vec!["SELECT (details)".into()],
            via: "PUBLIC".into(),
        });
        has(Problem::ExtraPrivilege {
            object: "pf_tenants".into(),
            kind: "table".into(),
            privileges: vec!["SELECT".into()],
            via: "member:web".into(),
            grant_option: false,
        });
        has(Problem::ExtraPrivilege {
            object: "v_users".into(),
            kind: "view".into(),
            privileges: vec!["SELECT".into()],
            via: "role".into(),
            grant_option: false,
        });
        has(Problem::CreateRight {
            on: "database".into(),
            name: "main".into(),
            via: "role".into(),
            revocable: true,
        });
        has(Problem::CreateRight {
            on: "schema".into(),
            name: "public".into(),
            via: "member:web".into(),
            revocable: false,
        });
        has(Problem::MemberRole {
            member: "web".into(),
            what: "has BYPASSRLS: row-level security does not apply to it (ALTER ROLE web NOBYPASSRLS)"
                .into(),
        });
        assert_eq!(problems.len(), 7, "{problems:#?}");
        let renderer = Renderer::new(Dialect::Postgres, None).unwrap();
        let plan = plan(&renderer, "app", &problems).unwrap();
        // The member's attribute and the schema right it may not revoke.
        assert_eq!(plan.unfixable.len(), 2, "{:#?}", plan.unfixable);
        let sql = planned_sql(&plan);
        for want in [
            "REVOKE UPDATE (action, user_id) ON TABLE pf_audit_log FROM app",
            "REVOKE SELECT (details) ON TABLE pf_audit_log FROM PUBLIC",
            "REVOKE SELECT ON TABLE pf_tenants FROM web",
            "REVOKE SELECT ON TABLE v_users FROM app",
            "REVOKE CREATE ON DATABASE main FROM app",
        ] {
            assert!(sql.contains(&want), "{want} not in {sql:#?}");
        }
        assert!(
            problems
                .iter()
                .map(|p| p.describe("app"))
                .any(|d| d == "web, a member of app, has CREATE on the schema public (DDL rights) (as its owner: REVOKE CREATE ON SCHEMA public FROM web)"),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_missing_role_reports_nothing_missing_but_extras_stand() {
        let mut c = clean_catalog();
        c.role = RoleFacts::default();
        for o in &mut c.objects {
            o.privileges.clear();
        }
        c.objects[4]
            .privileges
            .push(held("SELECT", "PUBLIC", false));
        let problems = compare(Dialect::Postgres, "app", &c, &tenants());
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }

    #[test]
    fn grants_are_batched_per_privilege_set() {
        let objects: Vec<(String, String)> = (0..1200)
            .map(|i| (format!("pf_user_t{i}_skills"), "table".to_string()))
            .collect();
        let dml: Vec<String> = DML.iter().map(|p| p.to_string()).collect();
        let pg = privilege_statements(Dialect::Postgres, true, &dml, &objects, "app", false);
        assert_eq!(pg.len(), 3, "500 objects per GRANT");
        assert!(
            pg[0].sql.starts_with(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pf_user_t0_skills, pf_user_t1_skills"
            ),
            "{}",
            &pg[0].sql[..100]
        );
        let ora = privilege_statements(Dialect::Oracle, true, &dml, &objects, "app", false);
        assert_eq!(ora.len(), 24, "50 GRANTs per block");
        assert!(ora[0].plsql);
        assert!(ora[0].sql.contains(
            "    EXECUTE IMMEDIATE 'GRANT SELECT, INSERT, UPDATE, DELETE ON pf_user_t0_skills TO app';\n"
        ));
    }

    #[test]
    fn the_v6_template_protects_exactly_own_rows() {
        let renderer = Renderer::new(Dialect::Postgres, None).unwrap();
        let v6: Vec<Statement> = renderer
            .system_migrations()
            .unwrap()
            .into_iter()
            .filter(|m| m.version == 6)
            .flat_map(|m| m.statements)
            .collect();
        let mut tables = Vec::new();
        for s in &v6 {
            if let Some(rest) = s.sql.strip_prefix("CREATE POLICY ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let table = words[2];
                let column = OWN_ROWS.iter().find(|(t, _)| *t == table).unwrap().1;
                assert_eq!(words[0], policy_name(table));
                // The expression the check expects is the one rendered.
                let using = s.sql.split("USING (").nth(1).unwrap();
                let using = &using[..using.find(")\n").unwrap()];
                assert_eq!(
                    normalize_expression(using),
                    normalize_expression(&postgres_policy_expression(column))
                );
                tables.push(table.to_string());
            }
        }
        let want: Vec<String> = OWN_ROWS.iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(tables, want);
        let oracle = Renderer::new(Dialect::Oracle, None).unwrap();
        for (table, _) in OWN_ROWS {
            assert_eq!(rendered_policy(&oracle, table).unwrap().len(), 1, "{table}");
            assert_eq!(
                rendered_policy(&renderer, table).unwrap().len(),
                1,
                "{table}"
            );
        }
    }
}
