//! Configuration: `pathfinder-db.toml`, then `PATHFINDER_*` environment variables,
//! then command-line flags; a later source wins.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::db::dialect::Dialect;
use crate::error::UsageError;

pub const DEFAULT_CONFIG_FILE: &str = "pathfinder-db.toml";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://pathfinder.db";

/// Connection pool settings (used by the Oracle pool; PostgreSQL and SQLite open
/// one connection per worker).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub min: u32,
    pub max: u32,
    pub increment: u32,
    /// Seconds an idle pooled connection is kept.
    pub timeout: u32,
    /// Seconds to wait for a new connection.
    pub connection_timeout: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min: 2,
            max: 10,
            increment: 1,
            timeout: 60,
            connection_timeout: 30,
        }
    }
}

/// A member database's entry in the file, `[members.NAME]`: where its
/// password is read from (the password itself never goes in the file nor in
/// the catalog).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// A file holding the member's password on one line, readable by its
    /// owner only (like the master key file).
    pub password_file: Option<PathBuf>,
}

/// The user id the process runs as (the owner its files get): a folder or
/// file of the tool's that another user owns is refused or ignored.
#[cfg(unix)]
pub fn running_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads a file that holds a secret (`what`: "master key file", "password
/// file"): refused when it is not a regular file, or when
/// anyone but its owner may read or write it (like ssh's private keys).
pub fn read_private_file(
    path: &Path,
    what: &str,
) -> Result<zeroize::Zeroizing<String>, UsageError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError::new(format!("cannot read {what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(UsageError::new(format!(
            "{what} {shown} is not a regular file: name the file itself"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(UsageError::new(format!(
                "{what} {shown} is accessible to group or others (mode {mode:04o}): run `chmod 600 {shown}` and keep it readable by this user only"
            )));
        }
    }
    std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| UsageError::new(format!("cannot read {what} {shown}: {e}")))
}

/// The file as written by a person: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub dialect: Option<String>,
    pub jobs: Option<usize>,
    pub max_jobs: Option<usize>,
    pub templates_dir: Option<PathBuf>,
    pub policies_dir: Option<PathBuf>,
    pub sqlite_busy_timeout_ms: Option<u64>,
    pub pool: Option<PoolConfig>,
    pub master_key_file: Option<PathBuf>,
    pub app_role: Option<String>,
    /// Per member database (by name): `[members.pg2] password_file = "..."`.
    pub members: Option<std::collections::BTreeMap<String, MemberConfig>>,
}

/// Values given on the command line (None where the flag was absent).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub dialect: Option<Dialect>,
    pub jobs: Option<usize>,
    pub master_key_file: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// The dialect `render` uses when asked for one (`render --dialect`, env,
    /// file); other commands use the database URL's.
    pub dialect_override: Option<Dialect>,
    pub jobs: usize,
    /// On a fleet `jobs` is per member database; this caps the sessions of
    /// one command in all (`max_jobs`, `PATHFINDER_MAX_JOBS`; default 16).
    pub max_jobs: usize,
    pub templates_dir: Option<PathBuf>,
    pub policies_dir: PathBuf,
    pub sqlite_busy_timeout_ms: u64,
    pub pool: PoolConfig,
    /// Where the master key comes from, if anywhere (read by `crate::security::keys`).
    pub master_key: Option<MasterKeySource>,
    /// The application's own role (`app_role`, `PATHFINDER_APP_ROLE`;
    /// default `pathfinder_app`): what pathfinder-db creates is granted to
    /// it when it exists ([`crate::security::grants`]).
    pub app_role: String,
    /// Member databases' entries (`[members.NAME]`), by name.
    pub members: std::collections::BTreeMap<String, MemberConfig>,
}

/// Where the master key is read from. Only the place is kept here: the key
/// itself is read when a command needs it, and never copied into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `PATHFINDER_MASTER_KEY`: the base64 text itself.
    Env,
    /// A file holding the base64 text on one line (`--master-key-file`,
    /// `PATHFINDER_MASTER_KEY_FILE`, `master_key_file`).
    File(PathBuf),
}

impl Config {
    /// Reads the file (an explicit `--config` must exist; the default file may be
    /// absent), then applies the environment, then the flags.
    pub fn load(flags: &Overrides) -> Result<Config, UsageError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let explicit = flags
            .config
            .clone()
            .or_else(|| env("PATHFINDER_CONFIG").map(PathBuf::from));
        let file = match &explicit {
            // Its relative paths are the file's, wherever the command runs
            // (cron starts in the home folder).
            Some(path) => read_file(path)?.relative_to(path.parent().unwrap_or(Path::new(""))),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileConfig::default(),
        };

        let parse_dialect = |v: String, from: &str| -> Result<Dialect, UsageError> {
            v.parse()
                .map_err(|e: String| UsageError::new(format!("{e} (in {from})")))
        };
        let parse_jobs = |v: String, from: &str| -> Result<usize, UsageError> {
            match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(UsageError::new(format!(
                    "jobs must be a whole number of at least 1, not {v:?} (in {from})"
                ))),
            }
        };

        let mut dialect = file
            .dialect
            .map(|d| parse_dialect(d, "the configuration file"))
            .transpose()?;
        if let Some(d) = env("PATHFINDER_DIALECT") {
            dialect = Some(parse_dialect(d, "PATHFINDER_DIALECT")?);
        }
        if flags.dialect.is_some() {
            dialect = flags.dialect;
        }

        let mut jobs = file.jobs.unwrap_or(4);
        if let Some(j) = env("PATHFINDER_JOBS") {
            jobs = parse_jobs(j, "PATHFINDER_JOBS")?;
        }
        if let Some(j) = flags.jobs {
            jobs = parse_jobs(j.to_string(), "--jobs")?;
        }
        if jobs == 0 {
            return Err(UsageError::new(
                "jobs must be at least 1 (in the configuration file)",
            ));
        }
        let mut max_jobs = match file.max_jobs {
            Some(0) => {
                return Err(UsageError::new(
                    "max_jobs must be at least 1 (in the configuration file)",
                ));
            }
            Some(n) => n,
            None => 16,
        };
        if let Some(j) = env("PATHFINDER_MAX_JOBS") {
            max_jobs = parse_jobs(j, "PATHFINDER_MAX_JOBS")?;
        }

        let database_url = flags
            .database_url
            .clone()
            .or_else(|| env("PATHFINDER_DATABASE_URL"))
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());

        // Flag, then the key in the environment, then a key file named there,
        // then the configuration file.
        let master_key = match &flags.master_key_file {
            Some(path) => Some(MasterKeySource::File(path.clone())),
            None if env("PATHFINDER_MASTER_KEY").is_some() => Some(MasterKeySource::Env),
            None => env("PATHFINDER_MASTER_KEY_FILE")
                .map(PathBuf::from)
                .or(file.master_key_file)
                .map(MasterKeySource::File),
        };

        let app_role = match env("PATHFINDER_APP_ROLE") {
            Some(role) => crate::security::grants::check_role_name(&role, "PATHFINDER_APP_ROLE")?,
            None => match file.app_role {
                Some(role) => crate::security::grants::check_role_name(&role, "app_role")?,
                None => crate::security::grants::DEFAULT_APP_ROLE.to_string(),
            },
        };

        let members = file.members.unwrap_or_default();
        for name in members.keys() {
            crate::fleet::members::validate_name(name).map_err(|e| {
                UsageError::new(format!("[members.{name:?}] in the configuration file: {e}"))
            })?;
        }

        Ok(Config {
            database_url,
            dialect_override: dialect,
            jobs,
            max_jobs,
            templates_dir: env("PATHFINDER_TEMPLATES_DIR")
                .map(PathBuf::from)
                .or(file.templates_dir),
            policies_dir: env("PATHFINDER_POLICIES_DIR")
                .map(PathBuf::from)
                .or(file.policies_dir)
                .unwrap_or_else(|| PathBuf::from("policies")),
            sqlite_busy_timeout_ms: file.sqlite_busy_timeout_ms.unwrap_or(30_000),
            pool: file.pool.unwrap_or_default(),
            master_key,
            app_role,
            members,
        })
    }

    /// The dialect of the configured database URL.
    pub fn url_dialect(&self) -> Result<Dialect, UsageError> {
        dialect_of_url(&self.database_url)
    }

    /// The dialect to render for: an explicit choice, else the database URL's.
    pub fn render_dialect(&self) -> Result<Dialect, UsageError> {
        match self.dialect_override {
            Some(d) => Ok(d),
            None => self.url_dialect(),
        }
    }

    /// The dialect of the database we connect to: the URL's. (`dialect` in
    /// the configuration is for `render` only.)
    pub fn database_dialect(&self) -> Result<Dialect, UsageError> {
        self.url_dialect()
    }
}

impl FileConfig {
    /// The file's relative paths (a SQLite URL's file, folders, key and
    /// password files) taken as relative to `dir`, the file's folder.
    fn relative_to(mut self, dir: &Path) -> FileConfig {
        if dir.as_os_str().is_empty() {
            return self;
        }
        let under = |p: PathBuf| if p.is_relative() { dir.join(p) } else { p };
        if let Some(url) = &self.database_url
            && let Some(rest) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            && !rest.is_empty()
            && rest != ":memory:"
            && Path::new(rest).is_relative()
        {
            self.database_url = Some(format!("sqlite://{}", dir.join(rest).display()));
        }
        self.templates_dir = self.templates_dir.map(under);
        self.policies_dir = self.policies_dir.map(under);
        self.master_key_file = self.master_key_file.map(under);
        if let Some(members) = &mut self.members {
            for member in members.values_mut() {
                member.password_file = member.password_file.take().map(under);
            }
        }
        self
    }
}

fn read_file(path: &Path) -> Result<FileConfig, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError::new(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        UsageError::new(format!(
            "invalid configuration file {}: {}",
            path.display(),
            e.message()
        ))
    })
}

/// `sqlite://file.db`, `postgres://...`, `oracle://...`, or a libpq
/// key=value string (`host=h dbname=d`: PostgreSQL).
pub fn dialect_of_url(url: &str) -> Result<Dialect, UsageError> {
    if is_key_value_string(url) {
        return Ok(Dialect::Postgres);
    }
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => Ok(Dialect::Sqlite),
        Some("postgres") | Some("postgresql") => Ok(Dialect::Postgres),
        Some("oracle") => Ok(Dialect::Oracle),
        _ => Err(UsageError::new(format!(
            "the database URL has no known scheme{}: use sqlite://FILE, postgres://USER@HOST:PORT/DB or oracle://USER@HOST:PORT/SERVICE (options after `?`; the password in PATHFINDER_DB_PASSWORD)",
            what_the_url_is(url, scheme.as_deref())
        ))),
    }
}

/// Whether `url` is a key=value string: a plain word, then `=`, before any `:`.
pub fn is_key_value_string(url: &str) -> bool {
    url.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Says what an unusable database URL looks like without showing it: the
/// text may hold a password under any name (`passwrod=`), so only the
/// scheme and the keys of key=value pairs are named, never a value.
fn what_the_url_is(url: &str, scheme: Option<&str>) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 20
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    };
    match scheme {
        Some(s) if plain(s) => format!(" (`{s}`)"),
        _ if url.contains('=') => format!(
            " (it looks like key=value pairs, {}; values are not shown)",
            match crate::db::redact::key_value_names(url) {
                names if names.is_empty() => "with no readable key".to_string(),
                names => format!("with key(s) {}", names.join(", ")),
            }
        ),
        _ => String::new(),
    }
}
