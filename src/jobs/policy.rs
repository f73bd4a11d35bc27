//! Retention policies: TOML files in `policies/` (one policy per file, named
//! after it), validated as a whole and synced into
//! `pf_data_retention_policies` by `policies apply`; `retention run` sweeps
//! by what is stored there.
//!
//! A policy names its tables by pattern. Patterns are matched against the
//! tables retention knows, never against the catalog: the nine tenant tables
//! (as `pf_user_*_<table>` or `<table>`), `pf_audit_log` and
//! `pf_user_sessions`. A pattern that also matches a table retention must
//! never touch (the registry, users, keys, reference data, migration
//! histories, summaries, archives) is refused, so `pf_*` cannot sweep
//! `pf_tenants` by accident.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::{Connection, DbError, Value};
use crate::error::UsageError;
use crate::jobs::archive::Action;
use crate::schema::tenant::{TABLES, TableDef};

/// The system tables a policy may sweep.
pub const AUDIT_LOG: &str = "pf_audit_log";
pub const SESSIONS: &str = "pf_user_sessions";

/// The date and timestamp columns of each table a policy may sweep: the
/// columns that can decide a row's age. (A unit test checks this list
/// against the templates.)
pub const AGE_COLUMNS: &[(&str, &[&str])] = &[
    (
        "experiences",
        &["start_date", "end_date", "created_at", "updated_at"],
    ),
    ("skills", &["last_used", "created_at"]),
    ("profile_summary", &["last_updated"]),
    ("quick_summary", &["last_updated"]),
    (
        "chat_conversations",
        &["last_message_at", "created_at", "updated_at", "deleted_at"],
    ),
    ("chat_messages", &["created_at", "deleted_at"]),
    ("career_analytics", &["metric_date", "created_at"]),
    ("skills_progression", &["assessment_date", "created_at"]),
    (
        "pert_responses",
        &["created_at", "updated_at", "submitted_at"],
    ),
    (AUDIT_LOG, &["created_at"]),
    (SESSIONS, &["expires_at", "created_at"]),
];

/// The age columns of type DATE (the others are TIMESTAMP): (table, column).
/// A cutoff is bound in the column's own type. (A unit test checks this list
/// against the templates.)
pub const DATE_COLUMNS: &[(&str, &str)] = &[
    ("experiences", "start_date"),
    ("experiences", "end_date"),
    ("skills", "last_used"),
    ("career_analytics", "metric_date"),
    ("skills_progression", "assessment_date"),
];

/// Whether `column` of `table` (a tenant table's full name or suffix, or a
/// system table) is a DATE column.
pub fn is_date_column(table: &str, column: &str) -> bool {
    DATE_COLUMNS
        .iter()
        .any(|(t, c)| *c == column && (table == *t || table.ends_with(&format!("_{t}"))))
}

/// Foreign keys between tenant tables: (child, column, parent). A parent row
/// that a child row points at is never deleted by a sweep. (A unit test
/// checks this list against the templates.)
pub const FOREIGN_KEYS: &[(&str, &str, &str)] = &[
    ("skills", "experience_id", "experiences"),
    ("pert_responses", "experience_id", "experiences"),
    ("chat_messages", "conversation_id", "chat_conversations"),
];

/// Where a table's age columns are listed.
pub fn age_columns(table: &str) -> &'static [&'static str] {
    AGE_COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or(&[])
}

/// A table a policy sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The same table of every tenant.
    Tenant(&'static TableDef),
    /// A system table (in the main database).
    System(&'static str),
}

impl Target {
    /// The table as a pattern: `pf_user_*_chat_messages`, `pf_audit_log`.
    pub fn display(&self) -> String {
        match self {
            Target::Tenant(def) => format!("pf_user_*_{}", def.name),
            Target::System(name) => name.to_string(),
        }
    }

    /// The table's own name (`chat_messages`, `pf_audit_log`).
    pub fn name(&self) -> &'static str {
        match self {
            Target::Tenant(def) => def.name,
            Target::System(name) => name,
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display())
    }
}

/// Tables no pattern may match, and what they are.
fn forbidden() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = vec![
        ("pf_tenants".into(), "the tenant registry"),
        ("pf_users".into(), "the user table"),
        ("pf_deployment".into(), "the deployment's identity"),
        ("pf_data_retention_policies".into(), "the policy table"),
        ("pf_encryption_keys".into(), "a key table"),
        ("pf_ref_skills_catalog".into(), "a reference table"),
        ("pf_ref_career_paths".into(), "a reference table"),
        (
            "refinery_schema_history".into(),
            "a migration history table",
        ),
        (
            "pf_user_*_schema_history".into(),
            "a migration history table",
        ),
        ("schema_history".into(), "a migration history table"),
        ("pf_user_*_career_summary".into(), "the career summary"),
        ("career_summary".into(), "the career summary"),
        ("pf_tenant_owner".into(), "a tenant file's owner record"),
        (
            crate::catalog::audit::STAGE.into(),
            "a tenant file's staged audit rows",
        ),
        ("pf_audit_log_archive".into(), "an archive table"),
    ];
    for t in TABLES {
        out.push((format!("pf_user_*_{}_archive", t.name), "an archive table"));
        out.push((format!("{}_archive", t.name), "an archive table"));
    }
    out
}

/// `*` matches any run of characters (including a literal `*` in `text`);
/// everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The tables `pattern` names, or why it is refused.
pub fn resolve(pattern: &str) -> Result<Vec<Target>, String> {
    if pattern.is_empty()
        || !pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'*')
    {
        return Err(format!(
            "pattern {pattern:?} may hold only lowercase letters, digits, _ and * (any characters)"
        ));
    }
    if let Some((table, what)) = forbidden()
        .into_iter()
        .find(|(t, _)| glob_match(pattern, t))
    {
        return Err(format!(
            "pattern {pattern:?} matches {table}, {what}, which retention never touches: name the tables more narrowly"
        ));
    }
    let mut out: Vec<Target> = TABLES
        .iter()
        .filter(|t| {
            glob_match(pattern, &format!("pf_user_*_{}", t.name)) || glob_match(pattern, t.name)
        })
        .map(Target::Tenant)
        .collect();
    out.extend(
        [AUDIT_LOG, SESSIONS]
            .into_iter()
            .filter(|t| glob_match(pattern, t))
            .map(Target::System),
    );
    if out.is_empty() {
        return Err(format!(
            "pattern {pattern:?} matches no table retention knows: pf_user_*_<table> or <table> for the tenant tables ({}), {AUDIT_LOG}, {SESSIONS}",
            TABLES.map(|t| t.name).join(", ")
        ));
    }
    Ok(out)
}

/// A policy: which tables, by which column, after how many days, and what
/// happens to a row that is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The file name without `.toml`.
    pub name: String,
    /// The patterns, as written.
    pub tables: Vec<String>,
    pub age_column: String,
    pub retention_days: i64,
    pub archive: bool,
    pub delete: bool,
    pub description: Option<String>,
    /// The file it came from.
    pub source: Option<String>,
}

impl Policy {
    pub fn action(&self) -> Action {
        // Both false is refused when the policy is read.
        Action::of(self.archive, self.delete).unwrap_or(Action::Copy)
    }

    /// The patterns as one value of `table_pattern`.
    pub fn table_pattern(&self) -> String {
        self.tables.join(", ")
    }

    /// The tables it sweeps, each once.
    pub fn targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for t in self
            .tables
            .iter()
            .flat_map(|p| resolve(p).unwrap_or_default())
        {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// The file as written; every key but `tables` and `retention_days` optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    tables: Vec<String>,
    #[serde(default = "default_age_column")]
    age_column: String,
    retention_days: i64,
    #[serde(default = "yes")]
    archive: bool,
    #[serde(default = "yes")]
    delete: bool,
    description: Option<String>,
}

fn default_age_column() -> String {
    "created_at".into()
}

fn yes() -> bool {
    true
}

/// The longest `retention_days` (100 years).
pub const MAX_DAYS: i64 = 36_500;

fn refuse(file: &Path, field: &str, problem: impl std::fmt::Display) -> UsageError {
    UsageError::new(format!("{}: field `{field}`: {problem}", file.display()))
}

/// Whether text read from a policy file may be quoted in a message: a
/// plausible field name (or a misspelling of one). Anything else is left
/// out, because the file may be the wrong one (a symlink to a key file) and
/// its text a secret.
fn quotable(text: &str) -> bool {
    // The parser's own tokens (`expected `=``) say nothing of a file.
    let token = text.len() <= 2 && text.bytes().all(|b| b.is_ascii_punctuation());
    token
        || !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `message` with every `quoted` part that is not [`quotable`] masked.
fn without_file_text(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && !quotable(part) {
                "(text not shown)".to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// The key of the `key = value` line that holds byte `offset` of `text`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"').to_string())
}

/// Reads and checks one policy file. The error names the file and the field.
pub fn parse(path: &Path, text: &str) -> Result<Policy, UsageError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.is_empty()
        || name.len() > 100
        || !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(UsageError::new(format!(
            "{}: file name: a policy is named after its file, which must be lowercase letters, digits, - and _ (at most 100), then .toml",
            path.display()
        )));
    }
    let file: PolicyFile = toml::from_str(text).map_err(|e| {
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(str::to_string);
        let field = named
            .or_else(|| e.span().and_then(|s| key_at(text, s.start)))
            .filter(|f| quotable(f))
            .unwrap_or_else(|| "?".into());
        let message = without_file_text(&message);
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match (line, field.as_str()) {
            // No field to name (a line that is not `key = value`): the line.
            (Some(line), "?") => {
                UsageError::new(format!("{}: line {line}: {message}", path.display()))
            }
            (Some(line), _) => refuse(path, &field, format!("{message} (line {line})")),
            (None, _) => refuse(path, &field, message),
        }
    })?;
    let policy = Policy {
        name,
        tables: file.tables,
        age_column: file.age_column,
        retention_days: file.retention_days,
        archive: file.archive,
        delete: file.delete,
        description: file.description,
        source: Some(path.display().to_string()),
    };
    check(path, &policy)?;
    Ok(policy)
}

/// Everything a policy must satisfy on its own.
fn check(path: &Path, p: &Policy) -> Result<(), UsageError> {
    if p.tables.is_empty() {
        return Err(refuse(
            path,
            "tables",
            "no table: list at least one pattern, e.g. [\"pf_user_*_chat_messages\"]",
        ));
    }
    let mut targets = Vec::new();
    for pattern in &p.tables {
        targets.extend(resolve(pattern).map_err(|e| refuse(path, "tables", e))?);
    }
    if p.table_pattern().len() > 255 {
        return Err(refuse(
            path,
            "tables",
            "the patterns take more than 255 characters (the size of table_pattern): use * to shorten them",
        ));
    }
    if p.retention_days < 1 {
        return Err(refuse(
            path,
            "retention_days",
            format!(
                "must be at least 1 day, not {}: a row is due when its age column is more than retention_days days in the past",
                p.retention_days
            ),
        ));
    }
    if p.retention_days > MAX_DAYS {
        return Err(refuse(
            path,
            "retention_days",
            format!(
                "must be at most {MAX_DAYS} (100 years), not {}",
                p.retention_days
            ),
        ));
    }
    for t in &targets {
        let columns = age_columns(t.name());
        if !columns.contains(&p.age_column.as_str()) {
            return Err(refuse(
                path,
                "age_column",
                format!(
                    "{} has no date or timestamp column {:?}; its columns that can decide a row's age: {}",
                    t.display(),
                    p.age_column,
                    columns.join(", ")
                ),
            ));
        }
    }
    if !p.archive && !p.delete {
        return Err(refuse(
            path,
            "archive",
            "archive and delete are both false, so the policy would do nothing: set archive = true (copy, and move with delete), delete = true, or both",
        ));
    }
    if p.archive && targets.contains(&Target::System(SESSIONS)) {
        return Err(refuse(
            path,
            "archive",
            format!(
                "{SESSIONS} holds credentials (refresh tokens), which are never archived: set archive = false (expired sessions are deleted)"
            ),
        ));
    }
    if let Some(d) = &p.description
        && d.chars().count() > 500
    {
        return Err(refuse(path, "description", "longer than 500 characters"));
    }
    Ok(())
}

/// Every `*.toml` in `dir`, checked one by one and together (no two policies
/// with the same list of tables, which `table_pattern` keeps unique), in name
/// order. The first problem is the error; nothing is written before.
pub fn load_dir(dir: &Path) -> Result<Vec<Policy>, UsageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        UsageError::new(format!(
            "cannot read the policies directory {}: {e}; set policies_dir in pathfinder-db.toml or PATHFINDER_POLICIES_DIR, or run from the directory that holds policies/",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut out: Vec<Policy> = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("cannot read {}: {e}", path.display())))?;
        let policy = parse(path, &text)?;
        if let Some(twin) = out
            .iter()
            .find(|p| p.table_pattern() == policy.table_pattern())
        {
            return Err(refuse(
                path,
                "tables",
                format!(
                    "the same tables as {} ({}); pf_data_retention_policies keeps one policy per list of tables: merge the two, or list the tables differently (e.g. chat_messages for pf_user_*_chat_messages)",
                    twin.source.as_deref().unwrap_or(&twin.name),
                    policy.table_pattern()
                ),
            ));
        }
        out.push(policy);
    }
    Ok(out)
}

/// A policy as stored, with its bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    #[serde(skip)]
    pub id: String,
    #[serde(flatten)]
    pub policy: Policy,
    /// When the last run that completed it started (ISO 8601 UTC).
    pub last_run: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

const COLUMNS: &str = "id, name, table_pattern, age_column, retention_days, archive_enabled, \
                       delete_enabled, description, source, last_run, created_at, updated_at";

fn opt_text(v: &Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_text())
}

/// Every stored policy, by name (rows without a name, not made by `policies
/// apply`, last).
pub fn stored(conn: &mut dyn Connection) -> Result<Vec<Stored>, DbError> {
    let rows = conn.query(
        &format!(
            "SELECT {COLUMNS} FROM pf_data_retention_policies ORDER BY CASE WHEN name IS NULL THEN 1 ELSE 0 END, name, table_pattern"
        ),
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Stored {
            id: r[0].to_text(),
            policy: Policy {
                name: opt_text(&r[1]).unwrap_or_default(),
                tables: r[2]
                    .to_text()
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
                age_column: opt_text(&r[3]).unwrap_or_else(default_age_column),
                retention_days: r[4].as_i64().unwrap_or(0),
                archive: r[5].as_i64() == Some(1),
                delete: r[6].as_i64() == Some(1),
                description: opt_text(&r[7]),
                source: opt_text(&r[8]),
            },
            last_run: opt_text(&r[9]).map(|t| crate::catalog::registry::iso_utc(&t)),
            created_at: crate::catalog::registry::iso_utc(&r[10].to_text()),
            updated_at: opt_text(&r[11]).map(|t| crate::catalog::registry::iso_utc(&t)),
        })
        .collect())
}

/// One difference between the files and the table.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Change {
    Insert {
        policy: Policy,
    },
    Update {
        policy: Policy,
        /// field -> [was, becomes]
        fields: BTreeMap<String, [serde_json::Value; 2]>,
        #[serde(skip)]
        id: String,
    },
    Remove {
        name: String,
        tables: String,
        #[serde(skip)]
        id: String,
    },
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Change::Insert { policy } | Change::Update { policy, .. } => &policy.name,
            Change::Remove { name, .. } => name,
        }
    }
}

/// What `policies apply` changes to make the table say what the files say.
pub fn diff(stored: &[Stored], files: &[Policy]) -> Vec<Change> {
    let mut out = Vec::new();
    for p in files {
        match stored.iter().find(|s| s.policy.name == p.name) {
            None => out.push(Change::Insert { policy: p.clone() }),
            Some(s) => {
                let mut fields = BTreeMap::new();
                let mut differs = |field: &str, a: serde_json::Value, b: serde_json::Value| {
                    if a != b {
                        fields.insert(field.to_string(), [a, b]);
                    }
                };
                let was = &s.policy;
                differs(
                    "tables",
                    was.table_pattern().into(),
                    p.table_pattern().into(),
                );
                differs(
                    "age_column",
                    was.age_column.clone().into(),
                    p.age_column.clone().into(),
                );
                differs(
                    "retention_days",
                    was.retention_days.into(),
                    p.retention_days.into(),
                );
                differs("archive", was.archive.into(), p.archive.into());
                differs("delete", was.delete.into(), p.delete.into());
                differs(
                    "description",
                    was.description.clone().into(),
                    p.description.clone().into(),
                );
                // Where the file was read from is no change of the policy
                // (the same folder applied from elsewhere is spelled otherwise).
                if !fields.is_empty() {
                    out.push(Change::Update {
                        policy: p.clone(),
                        fields,
                        id: s.id.clone(),
                    });
                }
            }
        }
    }
    for s in stored {
        if !files.iter().any(|p| p.name == s.policy.name) {
            out.push(Change::Remove {
                name: s.policy.name.clone(),
                tables: s.policy.table_pattern(),
                id: s.id.clone(),
            });
        }
    }
    out
}

fn flag(b: bool) -> Value {
    Value::Int(b as i64)
}

/// Makes the changes, in the caller's transaction, with one audit row each.
/// Removals go first, so a pattern list can move from one file to another.
pub fn apply(conn: &mut dyn Connection, changes: &[Change]) -> Result<(), DbError> {
    let mut ordered: Vec<&Change> = changes
        .iter()
        .filter(|c| matches!(c, Change::Remove { .. }))
        .collect();
    ordered.extend(
        changes
            .iter()
            .filter(|c| !matches!(c, Change::Remove { .. })),
    );
    for change in ordered {
        let action = match change {
            Change::Insert { policy: p } => {
                conn.execute(
                    "INSERT INTO pf_data_retention_policies (id, name, table_pattern, age_column, retention_days, \
                     archive_enabled, delete_enabled, description, source, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)",
                    &[
                        Value::Text(uuid::Uuid::new_v4().to_string()),
                        Value::Text(p.name.clone()),
                        Value::Text(p.table_pattern()),
                        Value::Text(p.age_column.clone()),
                        Value::Int(p.retention_days),
                        flag(p.archive),
                        flag(p.delete),
                        p.description.clone().into(),
                        p.source.clone().into(),
                    ],
                )?;
                "policy.insert"
            }
            Change::Update { policy: p, id, .. } => {
                conn.execute(
                    "UPDATE pf_data_retention_policies SET table_pattern = ?, age_column = ?, retention_days = ?, \
                     archive_enabled = ?, delete_enabled = ?, description = ?, source = ?, updated_at = CURRENT_TIMESTAMP \
                     WHERE id = ?",
                    &[
                        Value::Text(p.table_pattern()),
                        Value::Text(p.age_column.clone()),
                        Value::Int(p.retention_days),
                        flag(p.archive),
                        flag(p.delete),
                        p.description.clone().into(),
                        p.source.clone().into(),
                        Value::Text(id.clone()),
                    ],
                )?;
                "policy.update"
            }
            Change::Remove { id, .. } => {
                conn.execute(
                    "DELETE FROM pf_data_retention_policies WHERE id = ?",
                    &[Value::Text(id.clone())],
                )?;
                "policy.remove"
            }
        };
        let entry =
            crate::catalog::audit::AuditEntry::new(action, "policy", change.name(), "policies");
        let details = serde_json::to_string(change).unwrap_or_default();
        crate::catalog::audit::write_details(conn, &entry, Some(&details))?;
    }
    Ok(())
}

/// Records that the run started at `started` (`YYYY-MM-DD HH:MM:SS.ffffff`
/// UTC) completed these policies.
pub fn set_last_run(
    conn: &mut dyn Connection,
    names: &[String],
    started: &str,
) -> Result<(), DbError> {
    let ts = conn.dialect().timestamp_bind();
    for name in names {
        conn.execute(
            &format!("UPDATE pf_data_retention_policies SET last_run = {ts} WHERE name = ?"),
            &[Value::Text(started.into()), Value::Text(name.clone())],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dialect::Dialect;
    use crate::schema::render::Renderer;
    use crate::schema::tenant::TenantKey;

    #[test]
    fn globs() {
        assert!(glob_match(
            "pf_user_*_chat_messages",
            "pf_user_*_chat_messages"
        ));
        assert!(glob_match("*_messages", "chat_messages"));
        assert!(glob_match("pf_*", "pf_tenants"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("chat_*", "pf_user_*_chat_messages"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b", "ab_"));
    }

    #[test]
    fn patterns_resolve_to_known_tables_only() {
        let names = |p: &str| resolve(p).map(|ts| ts.iter().map(|t| t.name()).collect::<Vec<_>>());
        assert_eq!(names("pf_user_*_chat_messages").unwrap(), ["chat_messages"]);
        assert_eq!(names("chat_messages").unwrap(), ["chat_messages"]);
        assert_eq!(
            names("pf_user_*_chat_conversations").unwrap(),
            ["chat_conversations"]
        );
        assert_eq!(names("pf_audit_log").unwrap(), ["pf_audit_log"]);
        assert_eq!(names("pf_user_sessions").unwrap(), ["pf_user_sessions"]);
        for (bad, why) in [
            ("pf_tenants", "registry"),
            ("pf_*", "pf_tenants"),
            ("*", "never touches"),
            ("pf_user_*_schema_history", "history"),
            ("pf_user_*_chat_*", "archive"),
            ("pf_audit_log*", "archive"),
            ("pf_encryption_keys", "key"),
            ("pf_ref_skills_catalog", "reference"),
            ("pf_user_*_chats", "matches no table"),
            ("Chat_Messages", "lowercase"),
        ] {
            let err = resolve(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn file(text: &str) -> Result<Policy, String> {
        parse(Path::new("policies/p.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn invalid_policies_name_the_file_and_the_field() {
        let ok = "tables = [\"pf_user_*_chat_messages\"]\nretention_days = 365\n";
        let p = file(ok).unwrap();
        assert_eq!(p.action(), Action::Move);
        assert_eq!(p.age_column, "created_at");
        for (text, field, what) in [
            (
                "tables = [\"pf_tenants\"]\nretention_days = 3\n",
                "tables",
                "registry",
            ),
            (
                "tables = [\"pf_user_*_nope\"]\nretention_days = 3\n",
                "tables",
                "no table",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_days = 3\nage_column = \"nope\"\n",
                "age_column",
                "no date or timestamp column",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_days = 0\n",
                "retention_days",
                "at least 1",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_days = -5\n",
                "retention_days",
                "at least 1",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_days = 5\narchive = false\ndelete = false\n",
                "archive",
                "both false",
            ),
            (
                "tables = [\"pf_user_sessions\"]\nretention_days = 1\nage_column = \"expires_at\"\n",
                "archive",
                "credentials",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_dayz = 5\n",
                "retention_dayz",
                "unknown field",
            ),
            (
                "tables = [\"chat_messages\"]\n",
                "retention_days",
                "missing field",
            ),
            (
                "tables = [\"chat_messages\"]\nretention_days = \"x\"\n",
                "retention_days",
                "line 2",
            ),
            ("tables = []\nretention_days = 5\n", "tables", "no table"),
        ] {
            let err = file(text).unwrap_err();
            assert!(
                err.starts_with(&format!("policies/p.toml: field `{field}`: "))
                    && err.contains(what),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    /// The lists above say what the templates say: every age column is a
    /// DATE or TIMESTAMP column of its table, every date and timestamp
    /// column is listed, and the foreign keys are exactly the templates'.
    #[test]
    fn age_columns_and_foreign_keys_match_the_templates() {
        let renderer = Renderer::new(Dialect::Postgres, None).unwrap();
        let key = TenantKey::parse("t", Dialect::Postgres).unwrap();
        let mut ddl = String::new();
        for m in renderer.tenant_migrations(&key).unwrap() {
            ddl.push_str(&m.script(Dialect::Postgres));
        }
        for m in renderer.system_migrations().unwrap() {
            ddl.push_str(&m.script(Dialect::Postgres));
        }
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut dates: Vec<(String, String)> = Vec::new();
        let mut table = String::new();
        for line in ddl.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                table = rest.split_whitespace().next().unwrap().to_string();
            } else if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
                let mut words = rest.split_whitespace();
                let t = words.next().unwrap().to_string();
                if words.next() == Some("ADD") {
                    let col = words.next().unwrap().to_string();
                    let ty = words.next().unwrap_or("").trim_end_matches(';');
                    if ty == "DATE" {
                        dates.push((t.clone(), col.clone()));
                    }
                    if ty == "DATE" || ty == "TIMESTAMP" {
                        found.entry(t).or_default().push(col);
                    }
                }
                continue;
            }
            let mut words = line.split_whitespace();
            if let (Some(col), Some(ty)) = (words.next(), words.next()) {
                let ty = ty.trim_end_matches(',');
                if ty == "DATE" && !table.is_empty() {
                    dates.push((table.clone(), col.to_string()));
                }
                if (ty == "DATE" || ty == "TIMESTAMP") && !table.is_empty() {
                    found
                        .entry(table.clone())
                        .or_default()
                        .push(col.to_string());
                }
            }
        }
        for (t, columns) in AGE_COLUMNS {
            let name = if t.starts_with("pf_") {
                t.to_string()
            } else {
                key.object(t)
            };
            let mut have = found.get(&name).cloned().unwrap_or_default();
            have.sort();
            let mut want: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            want.sort();
            assert_eq!(have, want, "{t}");
        }
        let mut want_dates: Vec<(String, String)> = DATE_COLUMNS
            .iter()
            .map(|(t, c)| (key.object(t), c.to_string()))
            .collect();
        want_dates.sort();
        dates.sort();
        assert_eq!(dates, want_dates);
        for (t, c) in &dates {
            assert!(is_date_column(t, c), "{t}.{c}");
        }
        assert!(!is_date_column(&key.object("experiences"), "created_at"));
        let fks: Vec<(String, String, String)> = ddl
            .lines()
            .filter(|l| l.contains("FOREIGN KEY") && l.contains(&key.prefix()))
            .map(|l| {
                let col = l
                    .split("FOREIGN KEY (")
                    .nth(1)
                    .unwrap()
                    .split(')')
                    .next()
                    .unwrap();
                let parent = l
                    .split("REFERENCES ")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches(&key.prefix());
                let child = l
                    .split("CONSTRAINT ")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
                (child, col.to_string(), parent.to_string())
            })
            .collect();
        assert_eq!(fks.len(), FOREIGN_KEYS.len(), "{fks:?}");
        for (child, col, parent) in FOREIGN_KEYS {
            let short = crate::schema::tenant::table_def(child).unwrap().short;
            assert!(
                fks.iter().any(
                    |(c, k, p)| c.starts_with(&format!("{}{short}_", key.prefix()))
                        && k == col
                        && p == parent
                ),
                "{child}.{col} -> {parent} not in {fks:?}"
            );
        }
    }
}
