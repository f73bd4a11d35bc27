//! The three SQL dialects pathfinder-db speaks. Pure data: no I/O, so `render`,
//! `--dry-run` and the snapshot tests need no database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Oracle,
    Postgres,
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Oracle, Dialect::Postgres, Dialect::Sqlite];

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Oracle => "oracle",
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Longest identifier the server accepts, in bytes. PostgreSQL does not reject
    /// longer names, it silently truncates them, which is why we must check first.
    pub fn max_identifier_bytes(self) -> Option<usize> {
        match self {
            Dialect::Oracle => Some(128),
            Dialect::Postgres => Some(63),
            Dialect::Sqlite => None,
        }
    }

    /// Whether DDL takes part in transactions. Oracle commits every DDL statement,
    /// so each step there must be idempotent instead.
    pub fn transactional_ddl(self) -> bool {
        !matches!(self, Dialect::Oracle)
    }

    /// Column type for a string of at most `n` characters.
    pub fn varchar(self, n: u32) -> String {
        match self {
            Dialect::Oracle => format!("VARCHAR2({n})"),
            Dialect::Postgres => format!("VARCHAR({n})"),
            Dialect::Sqlite => "TEXT".into(),
        }
    }

    /// Column type for unbounded text.
    pub fn clob(self) -> &'static str {
        match self {
            Dialect::Oracle => "CLOB",
            Dialect::Postgres | Dialect::Sqlite => "TEXT",
        }
    }

    /// Column type for a 0/1 flag (the CHECK is added by the template).
    pub fn flag(self) -> &'static str {
        match self {
            Dialect::Oracle => "NUMBER(1)",
            Dialect::Postgres => "SMALLINT",
            Dialect::Sqlite => "INTEGER",
        }
    }

    /// Column type for a whole number of at most `digits` decimal digits.
    pub fn integer(self, digits: u32) -> String {
        match self {
            Dialect::Oracle => format!("NUMBER({digits})"),
            Dialect::Postgres if digits <= 4 => "SMALLINT".into(),
            Dialect::Postgres if digits <= 9 => "INTEGER".into(),
            Dialect::Postgres => "BIGINT".into(),
            Dialect::Sqlite => "INTEGER".into(),
        }
    }

    /// Column type for an exact decimal number.
    pub fn decimal(self, precision: u32, scale: u32) -> String {
        match self {
            Dialect::Oracle => format!("NUMBER({precision},{scale})"),
            Dialect::Postgres => format!("NUMERIC({precision},{scale})"),
            Dialect::Sqlite => "NUMERIC".into(),
        }
    }

    /// Column type for a calendar date (SQLite: ISO-8601 text).
    pub fn date(self) -> &'static str {
        match self {
            Dialect::Oracle | Dialect::Postgres => "DATE",
            Dialect::Sqlite => "TEXT",
        }
    }

    /// Column type for a point in time (SQLite: ISO-8601 text).
    pub fn timestamp(self) -> &'static str {
        match self {
            Dialect::Oracle | Dialect::Postgres => "TIMESTAMP",
            Dialect::Sqlite => "TEXT",
        }
    }

    /// The current time with sub-second precision, for defaults whose order
    /// matters (SQLite's CURRENT_TIMESTAMP has whole seconds only).
    pub fn now_with_fraction(self) -> &'static str {
        match self {
            Dialect::Oracle | Dialect::Postgres => "CURRENT_TIMESTAMP",
            Dialect::Sqlite => "(strftime('%Y-%m-%d %H:%M:%f', 'now'))",
        }
    }

    /// A `?` placeholder for a timestamp bound as text
    /// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), converted by the server where the
    /// column is a real TIMESTAMP (Oracle would otherwise apply the session's
    /// NLS format). SQLite stores the text as it is.
    pub fn timestamp_bind(self) -> &'static str {
        match self {
            Dialect::Oracle => "TO_TIMESTAMP(?, 'YYYY-MM-DD HH24:MI:SS.FF6')",
            Dialect::Postgres => "CAST(? AS TIMESTAMP)",
            Dialect::Sqlite => "?",
        }
    }

    /// A `?` placeholder for a point in time compared with a DATE column,
    /// bound as text `YYYY-MM-DD HH:MM:SS` (whole seconds, UTC). Oracle gets
    /// a DATE: a TIMESTAMP there would widen the column to TIMESTAMP for the
    /// comparison, and its index could not serve the range. PostgreSQL
    /// compares a date with a timestamp through the date's own index, and
    /// SQLite compares the text.
    pub fn date_bind(self) -> &'static str {
        match self {
            Dialect::Oracle => "TO_DATE(?, 'YYYY-MM-DD HH24:MI:SS')",
            Dialect::Postgres | Dialect::Sqlite => self.timestamp_bind(),
        }
    }

    /// The clause that keeps the first `?` rows of an ordered query (the row
    /// count is a bind value): Oracle has no LIMIT.
    pub fn first_rows(self) -> &'static str {
        match self {
            Dialect::Oracle => "FETCH FIRST ? ROWS ONLY",
            Dialect::Postgres | Dialect::Sqlite => "LIMIT ?",
        }
    }

    /// The clause that keeps only the row after skipping `?` rows of an
    /// ordered query (the count is a bind value).
    pub fn nth_row(self) -> &'static str {
        match self {
            Dialect::Oracle | Dialect::Postgres => "OFFSET ? ROWS FETCH NEXT 1 ROWS ONLY",
            Dialect::Sqlite => "LIMIT 1 OFFSET ?",
        }
    }

    /// Locks a transaction's writes out of `tables` until it ends while
    /// readers go on (SHARE mode blocks INSERT, UPDATE and DELETE), or None
    /// where the transaction already holds the only write lock (SQLite).
    pub fn share_lock(self, tables: &[String]) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            _ if tables.is_empty() => None,
            Dialect::Oracle | Dialect::Postgres => {
                Some(format!("LOCK TABLE {} IN SHARE MODE", tables.join(", ")))
            }
        }
    }

    /// Locks writers out of `table` until the transaction ends while readers
    /// go on, or None where the transaction already holds the only write
    /// lock (SQLite).
    pub fn exclusive_lock(self, table: &str) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Oracle | Dialect::Postgres => {
                Some(format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
            }
        }
    }

    /// `table` under `alias` in a DELETE (SQLite wants AS there, Oracle
    /// refuses it).
    pub fn aliased(self, table: &str, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{table} AS {alias}"),
            Dialect::Oracle | Dialect::Postgres => format!("{table} {alias}"),
        }
    }

    /// Bind placeholder number `n` (1-based) in this dialect's syntax.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Oracle => format!(":{n}"),
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "oracle" => Ok(Dialect::Oracle),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            other => Err(format!(
                "unknown dialect '{other}': use oracle, postgres or sqlite"
            )),
        }
    }
}
