//! The Tera environment over `table-templates/`: (tenant, version, dialect) -> statements.
//!
//! Templates are embedded at build time; `templates_dir` in the configuration can
//! point at a directory on disk instead. Types come from functions bound to the
//! dialect (`{{ varchar(n=255) }}`, `{{ text() }}`, ...), identifiers from the
//! prefix `p` (`pf_user_<key>_`), so each table's columns are written once.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::db::dialect::Dialect;
use crate::schema::tenant::TenantKey;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// A template that failed to load or render: the template name and Tera's full
/// chain of causes, on one line.
#[derive(Debug, thiserror::Error)]
#[error(
    "template error in {template}: {detail}; fix the template (or unset templates_dir to use the built-in ones)"
)]
pub struct TemplateError {
    pub template: String,
    pub detail: String,
}

impl TemplateError {
    fn new(template: &str, err: tera::Error) -> Self {
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        TemplateError {
            template: template.to_string(),
            detail: detail.replace('\n', " "),
        }
    }
}

/// One SQL statement, without a trailing `;` (Oracle refuses one on plain
/// statements). `plsql` marks an anonymous block, which keeps its `END;`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub sql: String,
    pub plsql: bool,
}

/// Which schema a migration belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    Tenant,
}

impl Scope {
    fn dir(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Tenant => "tenant",
        }
    }
}

/// One rendered migration version (`V2__soft_delete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    /// refinery's name for it: `V2__soft_delete`.
    pub name: String,
    pub statements: Vec<Statement>,
}

impl Migration {
    /// The migration as one script: what refinery checksums and stores.
    pub fn script(&self, dialect: Dialect) -> String {
        script(&self.statements, dialect)
    }
}

pub struct Renderer {
    dialect: Dialect,
    tera: Tera,
    /// (scope, version, template name), sorted by version.
    versions: Vec<(Scope, u32, String)>,
    /// The tenant migrations rendered once with a stand-in prefix: a run over
    /// thousands of tenants substitutes the prefix instead of rendering again.
    tenant_cache: std::sync::OnceLock<Option<Vec<Migration>>>,
}

/// Stands in for `pf_user_<key>_` in cached renderings; a control character,
/// so no template text can contain it by accident.
const PREFIX_STAND_IN: &str = "\u{1}tenant_prefix\u{1}";

fn arg_u32(args: &HashMap<String, Value>, name: &str, function: &str) -> tera::Result<u32> {
    args.get(name)
        .and_then(Value::as_u64)
        .map(|v| v as u32)
        .ok_or_else(|| tera::Error::msg(format!("{function}() needs {name}=<number>")))
}

fn register_type_functions(tera: &mut Tera, dialect: Dialect) {
    tera.register_function("varchar", move |args: &HashMap<String, Value>| {
        Ok(Value::String(
            dialect.varchar(arg_u32(args, "n", "varchar")?),
        ))
    });
    tera.register_function("int", move |args: &HashMap<String, Value>| {
        Ok(Value::String(
            dialect.integer(arg_u32(args, "digits", "int")?),
        ))
    });
    tera.register_function("decimal", move |args: &HashMap<String, Value>| {
        let p = arg_u32(args, "p", "decimal")?;
        let s = arg_u32(args, "s", "decimal")?;
        Ok(Value::String(dialect.decimal(p, s)))
    });
    tera.register_function("text", move |_: &HashMap<String, Value>| {
        Ok(Value::String(dialect.clob().into()))
    });
    tera.register_function("flag", move |_: &HashMap<String, Value>| {
        Ok(Value::String(dialect.flag().into()))
    });
    tera.register_function("date", move |_: &HashMap<String, Value>| {
        Ok(Value::String(dialect.date().into()))
    });
    tera.register_function("timestamp", move |_: &HashMap<String, Value>| {
        Ok(Value::String(dialect.timestamp().into()))
    });
    tera.register_function("now", move |_: &HashMap<String, Value>| {
        Ok(Value::String(dialect.now_with_fraction().into()))
    });
}

/// Parses `tenant/V12__add_things.sql.tera` into (scope, 12).
fn migration_version(template: &str) -> Option<(Scope, u32)> {
    let (dir, file) = template.split_once('/')?;
    let scope = match dir {
        "system" => Scope::System,
        "tenant" => Scope::Tenant,
        _ => return None,
    };
    let rest = file.strip_prefix('V')?.strip_suffix(".sql.tera")?;
    let (version, name) = rest.split_once("__")?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    Some((scope, version.parse().ok()?))
}

impl Renderer {
    /// Loads the templates (embedded, or from `templates_dir`) for one dialect.
    pub fn new(dialect: Dialect, templates_dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        register_type_functions(&mut tera, dialect);
        let sources: Vec<(String, String)> = match templates_dir {
            None => EMBEDDED_TEMPLATES
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            Some(dir) => read_template_dir(dir)?,
        };
        tera.add_raw_templates(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())))
            .map_err(|e| TemplateError::new(&display_dir(templates_dir), e))?;
        let mut versions: Vec<(Scope, u32, String)> = sources
            .iter()
            .filter_map(|(name, _)| migration_version(name).map(|(s, v)| (s, v, name.clone())))
            .collect();
        versions.sort_by_key(|(s, v, _)| (s.dir(), *v));
        for pair in versions.windows(2) {
            if pair[0].0 == pair[1].0 && pair[0].1 == pair[1].1 {
                return Err(TemplateError {
                    template: pair[1].2.clone(),
                    detail: format!("version {} is also defined by {}", pair[1].1, pair[0].2),
                });
            }
        }
        Ok(Renderer {
            dialect,
            tera,
            versions,
            tenant_cache: Default::default(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn render(&self, template: &str, prefix: &str) -> Result<Vec<Statement>, TemplateError> {
        self.render_with(template, prefix, &[])
    }

    fn render_with(
        &self,
        template: &str,
        prefix: &str,
        flags: &[(&str, Value)],
    ) -> Result<Vec<Statement>, TemplateError> {
        let mut ctx = Context::new();
        ctx.insert("dialect", self.dialect.name());
        ctx.insert("p", prefix);
        ctx.insert("tables", &crate::schema::tenant::TABLES);
        ctx.insert(
            "tables_children_first",
            &crate::schema::tenant::tables_children_first().collect::<Vec<_>>(),
        );
        for (name, value) in flags {
            ctx.insert(*name, value);
        }
        let text = self
            .tera
            .render(template, &ctx)
            .map_err(|e| TemplateError::new(template, e))?;
        Ok(split_statements(&text))
    }

    /// Highest migration version defined for `scope`.
    pub fn latest_version(&self, scope: Scope) -> u32 {
        self.versions
            .iter()
            .filter(|(s, _, _)| *s == scope)
            .map(|(_, v, _)| *v)
            .max()
            .unwrap_or(0)
    }

    fn migrations(&self, scope: Scope, prefix: &str) -> Result<Vec<Migration>, TemplateError> {
        self.versions
            .iter()
            .filter(|(s, _, _)| *s == scope)
            .map(|(_, version, template)| {
                let file = template.rsplit('/').next().unwrap_or(template);
                Ok(Migration {
                    version: *version,
                    name: file.trim_end_matches(".sql.tera").to_string(),
                    statements: self.render(template, prefix)?,
                })
            })
            .collect()
    }

    /// Every migration of a tenant, oldest first.
    pub fn tenant_migrations(&self, key: &TenantKey) -> Result<Vec<Migration>, TemplateError> {
        let cached = self
            .tenant_cache
            .get_or_init(|| self.migrations(Scope::Tenant, PREFIX_STAND_IN).ok());
        let prefix = key.prefix();
        if let Some(cached) = cached {
            let substituted: Vec<Migration> = cached
                .iter()
                .map(|m| Migration {
                    statements: m
                        .statements
                        .iter()
                        .map(|st| Statement {
                            sql: st.sql.replace(PREFIX_STAND_IN, &prefix),
                            plsql: st.plsql,
                        })
                        .collect(),
                    ..m.clone()
                })
                .collect();
            // A template that transformed the prefix (a filter on `p`) leaves
            // the stand-in mangled: render such a tenant for real.
            if !substituted
                .iter()
                .flat_map(|m| &m.statements)
                .any(|st| st.sql.contains('\u{1}'))
            {
                return Ok(substituted);
            }
        }
        self.migrations(Scope::Tenant, &prefix)
    }

    /// Every migration of the shared system schema, oldest first.
    pub fn system_migrations(&self) -> Result<Vec<Migration>, TemplateError> {
        self.migrations(Scope::System, "pf_")
    }

    /// How many indexes a tenant has at `version` (for messages).
    pub fn tenant_index_count(&self, version: u32) -> usize {
        let Ok(key) = TenantKey::parse("count", Dialect::Sqlite) else {
            return 0;
        };
        self.migrations(Scope::Tenant, &key.prefix())
            .map(|ms| {
                ms.iter()
                    .filter(|m| m.version <= version)
                    .flat_map(|m| &m.statements)
                    .filter(|s| {
                        s.sql
                            .trim_start()
                            .to_ascii_uppercase()
                            .starts_with("CREATE INDEX")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Statements that recompute the tenant's career summary.
    pub fn refresh_career_summary(&self, key: &TenantKey) -> Result<Vec<Statement>, TemplateError> {
        self.render("tenant/refresh_career_summary.sql.tera", &key.prefix())
    }

    /// Statements that drop every object of the tenant, archives included, idempotently.
    pub fn drop_tenant(&self, key: &TenantKey) -> Result<Vec<Statement>, TemplateError> {
        self.render_with(
            "tenant/drop.sql.tera",
            &key.prefix(),
            &[("keep_archives", Value::Bool(false))],
        )
    }

    /// Like [`Renderer::drop_tenant`], but the archive tables stay.
    pub fn drop_tenant_keeping_archives(
        &self,
        key: &TenantKey,
    ) -> Result<Vec<Statement>, TemplateError> {
        self.render_with(
            "tenant/drop.sql.tera",
            &key.prefix(),
            &[("keep_archives", Value::Bool(true))],
        )
    }
}

impl Renderer {
    /// Statements that create the archive table of one tenant table.
    pub fn archive_table(
        &self,
        key: &TenantKey,
        table: &crate::schema::tenant::TableDef,
    ) -> Result<Vec<Statement>, TemplateError> {
        self.render_with(
            "tenant/archive_table.sql.tera",
            &key.prefix(),
            &[
                ("table", Value::String(table.name.into())),
                ("short", Value::String(table.short.into())),
            ],
        )
    }
}

impl Renderer {
    /// Statements that create `pf_audit_log_archive` (system version 4
    /// creates it; retention makes it again if it is missing).
    pub fn audit_log_archive(&self) -> Result<Vec<Statement>, TemplateError> {
        self.render("system/audit_log_archive.sql.tera", "pf_")
    }
}

fn display_dir(dir: Option<&Path>) -> String {
    dir.map(|d| d.display().to_string())
        .unwrap_or_else(|| "built-in templates".into())
}

fn read_template_dir(root: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, root, out)?;
            } else if path.to_string_lossy().ends_with(".tera") {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, std::fs::read_to_string(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out).map_err(|e| TemplateError {
        template: root.display().to_string(),
        detail: format!("cannot read the templates directory: {e}"),
    })?;
    Ok(out)
}

fn starts_plsql(line: &str) -> bool {
    let upper = line.trim_start().to_ascii_uppercase();
    upper.starts_with("BEGIN") || upper.starts_with("DECLARE") || starts_plsql_unit(&upper)
}

/// A PostgreSQL function whose body is dollar-quoted: its first line ends
/// with the opening `$$`.
fn starts_dollar_quote(line: &str) -> bool {
    line.trim_end().ends_with("$$")
}

/// `CREATE [OR REPLACE] PACKAGE [BODY] | FUNCTION | PROCEDURE ...` or `CREATE
/// OR REPLACE TRIGGER`: a stored PL/SQL unit (Oracle), whose body holds
/// `;`-terminated statements. Like an anonymous block it ends at a line
/// holding only `/`, and keeps its `END;`.
fn starts_plsql_unit(line: &str) -> bool {
    let mut words = line.split_whitespace().map(str::to_ascii_uppercase);
    if words.next().as_deref() != Some("CREATE") {
        return false;
    }
    let mut next = words.next();
    let replace = next.as_deref() == Some("OR");
    if replace {
        if words.next().as_deref() != Some("REPLACE") {
            return false;
        }
        next = words.next();
    }
    // `CREATE OR REPLACE TRIGGER` is Oracle's: the SQLite and PostgreSQL
    // templates write `CREATE TRIGGER`.
    matches!(next.as_deref(), Some("PACKAGE" | "FUNCTION" | "PROCEDURE"))
        || (replace && next.as_deref() == Some("TRIGGER"))
}

fn starts_trigger(line: &str) -> bool {
    let mut words = line.split_whitespace();
    matches!(
        (words.next(), words.next()),
        (Some(create), Some(trigger))
            if create.eq_ignore_ascii_case("CREATE") && trigger.eq_ignore_ascii_case("TRIGGER")
    )
}

/// How the statement being read ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A line ending in `;`.
    Semicolon,
    /// A PL/SQL block: a line holding only `/`.
    Slash,
    /// A SQLite trigger, whose body holds `;`-terminated statements: a line
    /// that is `END;` from its first column (the body's lines are indented).
    /// A trigger without a `BEGIN` body (PostgreSQL's, which calls a
    /// function) ends like a plain statement.
    TriggerEnd,
    /// A dollar-quoted body (PostgreSQL): the line that closes it, ending
    /// in `$$;`.
    DollarQuote,
}

/// Splits rendered SQL into statements. A plain statement ends at a line ending in
/// `;`; a PL/SQL block (starting with BEGIN or DECLARE) or stored unit (`CREATE
/// [OR REPLACE] PACKAGE | FUNCTION | PROCEDURE`) ends at a line holding only
/// `/`, as in SQL*Plus; a `CREATE TRIGGER` with a body ends at a line that is
/// `END;` with no indentation; a statement whose first line ends with `$$`
/// (a PostgreSQL function) ends at the line ending in `$$;`. Blank lines and
/// `--` comment lines between statements are dropped.
pub fn split_statements(text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut ending = Ending::Semicolon;
    // Whether the trigger being read has a BEGIN ... END body.
    let mut trigger_body = false;
    let finish = |current: &mut Vec<&str>, out: &mut Vec<Statement>, ending: Ending| {
        if current.iter().any(|l| !l.trim().is_empty()) {
            out.push(Statement {
                sql: current.join("\n").trim_end().to_string(),
                plsql: ending == Ending::Slash,
            });
        }
        current.clear();
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() {
            if trimmed.is_empty() || trimmed.starts_with("--") {
                continue;
            }
            trigger_body = false;
            ending = if starts_dollar_quote(trimmed) {
                Ending::DollarQuote
            } else if starts_plsql(trimmed) {
                Ending::Slash
            } else if starts_trigger(trimmed) {
                Ending::TriggerEnd
            } else {
                Ending::Semicolon
            };
        }
        trigger_body |= ending == Ending::TriggerEnd
            && trimmed
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("BEGIN"));
        let ends = match ending {
            Ending::Slash => trimmed == "/",
            Ending::Semicolon => trimmed.ends_with(';'),
            Ending::TriggerEnd if trigger_body => line.trim_end() == "END;",
            Ending::TriggerEnd => trimmed.ends_with(';'),
            Ending::DollarQuote => !current.is_empty() && trimmed.ends_with("$$;"),
        };
        if !ends {
            current.push(line.trim_end());
            continue;
        }
        if ending != Ending::Slash {
            // The `;` is dropped here and written back by `script`.
            current.push(line.trim_end().strip_suffix(';').unwrap_or(line));
        }
        finish(&mut current, &mut out, ending);
    }
    finish(&mut current, &mut out, ending);
    out
}

/// Statements as a script psql, sqlite3 and SQL*Plus run as is: `;` after plain
/// statements, `/` on its own line after PL/SQL blocks.
pub fn script(statements: &[Statement], _dialect: Dialect) -> String {
    let mut out = String::new();
    for stmt in statements {
        out.push_str(&stmt.sql);
        out.push_str(if stmt.plsql { "\n/\n\n" } else { ";\n\n" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_plsql_statements() {
        let text = "-- c\nCREATE TABLE a (x INT);\n\nBEGIN\n  foo;\nEND;\n/\nDROP TABLE a;\n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 3);
        assert_eq!(stmts[0].sql, "CREATE TABLE a (x INT)");
        assert!(stmts[1].plsql);
        assert_eq!(stmts[1].sql, "BEGIN\n  foo;\nEND;");
        assert_eq!(stmts[2].sql, "DROP TABLE a");
        assert_eq!(split_statements(&script(&stmts, Dialect::Oracle)), stmts);
    }

    #[test]
    fn a_stored_plsql_unit_ends_at_its_slash() {
        let text = "CREATE OR REPLACE CONTEXT c USING p;\n\
                    CREATE OR REPLACE PACKAGE p AS\n    PROCEDURE x;\nEND p;\n/\n\
                    create function f(a IN VARCHAR2) RETURN VARCHAR2\nIS\nBEGIN\n    RETURN a;\nEND f;\n/\n\
                    CREATE OR REPLACE TABLE t (x INT);\n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 4, "{stmts:?}");
        assert_eq!(stmts[0].sql, "CREATE OR REPLACE CONTEXT c USING p");
        assert!(!stmts[0].plsql);
        assert_eq!(
            stmts[1].sql,
            "CREATE OR REPLACE PACKAGE p AS\n    PROCEDURE x;\nEND p;"
        );
        assert!(stmts[1].plsql);
        assert!(stmts[2].plsql && stmts[2].sql.ends_with("END f;"));
        // Not a PL/SQL unit: ends at its `;`.
        assert!(!stmts[3].plsql);
        assert_eq!(split_statements(&script(&stmts, Dialect::Oracle)), stmts);
    }

    #[test]
    fn a_dollar_quoted_function_and_a_trigger_without_body_end_where_postgres_ends_them() {
        let text = "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                    BEGIN\n    UPDATE t SET x = x + 1;\n    RETURN NULL;\nEND\n$$;\n\
                    CREATE TRIGGER t_tg AFTER INSERT ON t\n\
                    FOR EACH ROW EXECUTE FUNCTION f();\n\
                    CREATE INDEX t_ix ON t (x);\n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert_eq!(
            stmts[0].sql,
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    \
             UPDATE t SET x = x + 1;\n    RETURN NULL;\nEND\n$$"
        );
        assert_eq!(
            stmts[1].sql,
            "CREATE TRIGGER t_tg AFTER INSERT ON t\nFOR EACH ROW EXECUTE FUNCTION f()"
        );
        assert!(stmts.iter().all(|s| !s.plsql));
        assert_eq!(stmts[2].sql, "CREATE INDEX t_ix ON t (x)");
        assert_eq!(split_statements(&script(&stmts, Dialect::Postgres)), stmts);
    }

    #[test]
    fn an_oracle_trigger_is_a_plsql_unit() {
        let text = "CREATE OR REPLACE TRIGGER t_tg\nAFTER INSERT ON t\nFOR EACH ROW\n\
                    BEGIN\n    UPDATE u SET n = n + 1;\nEND;\n/\nCREATE INDEX t_ix ON t (x);\n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 2, "{stmts:?}");
        assert!(stmts[0].plsql);
        assert!(stmts[0].sql.ends_with("END;"), "{}", stmts[0].sql);
        assert_eq!(split_statements(&script(&stmts, Dialect::Oracle)), stmts);
    }

    #[test]
    fn a_trigger_ends_at_an_unindented_end() {
        let text = "CREATE TABLE t (x INT);\n\
                    create trigger t_tg BEFORE INSERT ON t\n\
                    FOR EACH ROW BEGIN\n    SELECT 1;\n    SELECT CASE WHEN NEW.x < 0 THEN RAISE(ABORT, 'x; no') END;\nEND;\n\
                    \n\
                    CREATE INDEX t_ix ON t (x);\n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert_eq!(stmts[0].sql, "CREATE TABLE t (x INT)");
        assert_eq!(
            stmts[1].sql,
            "create trigger t_tg BEFORE INSERT ON t\nFOR EACH ROW BEGIN\n    SELECT 1;\n    \
             SELECT CASE WHEN NEW.x < 0 THEN RAISE(ABORT, 'x; no') END;\nEND"
        );
        assert!(!stmts[1].plsql);
        assert_eq!(stmts[2].sql, "CREATE INDEX t_ix ON t (x)");
        assert_eq!(split_statements(&script(&stmts, Dialect::Sqlite)), stmts);
        // The script runs in SQLite as written, and the trigger fires.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&script(&stmts, Dialect::Sqlite))
            .unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let err = conn.execute("INSERT INTO t VALUES (-1)", []).unwrap_err();
        assert!(err.to_string().contains("x; no"), "{err}");
    }

    #[test]
    fn every_sqlite_tenant_statement_survives_a_script_round_trip() {
        let renderer = Renderer::new(Dialect::Sqlite, None).unwrap();
        let key = TenantKey::parse("alice", Dialect::Sqlite).unwrap();
        let migrations = renderer.tenant_migrations(&key).unwrap();
        let mut triggers = 0;
        for m in &migrations {
            assert_eq!(
                split_statements(&m.script(Dialect::Sqlite)),
                m.statements,
                "{}",
                m.name
            );
            triggers += m
                .statements
                .iter()
                .filter(|s| starts_trigger(&s.sql))
                .count();
        }
        assert_eq!(
            triggers, 18,
            "a BEFORE INSERT and a BEFORE UPDATE per table"
        );
    }

    #[test]
    fn cached_tenant_migrations_equal_a_fresh_rendering() {
        for dialect in Dialect::ALL {
            let renderer = Renderer::new(dialect, None).unwrap();
            for name in ["alice", "bob_smith"] {
                let key = TenantKey::parse(name, dialect).unwrap();
                let fresh = renderer.migrations(Scope::Tenant, &key.prefix()).unwrap();
                assert_eq!(
                    renderer.tenant_migrations(&key).unwrap(),
                    fresh,
                    "{dialect} {name}"
                );
            }
        }
    }

    #[test]
    fn parses_migration_names() {
        assert_eq!(
            migration_version("tenant/V2__soft_delete.sql.tera"),
            Some((Scope::Tenant, 2))
        );
        assert_eq!(
            migration_version("system/V10__x.sql.tera"),
            Some((Scope::System, 10))
        );
        assert_eq!(migration_version("tenant/tables/skills.sql.tera"), None);
        assert_eq!(migration_version("tenant/drop.sql.tera"), None);
    }
}
