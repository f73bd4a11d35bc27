//! The command line: one file per subcommand (its clap Args and a handler that
//! calls the library and presents the result). No SQL here.

mod adopt;
mod analyze;
mod audit;
mod completions;
mod databases;
mod deprovision;
mod doctor;
mod export;
mod fingerprint;
mod grants;
mod import;
mod init;
mod keys;
mod migrate;
mod move_tenant;
mod policies;
mod provision;
mod rebalance;
mod refresh;
mod render;
mod retention;
mod sessions;
mod stats;
mod status;
mod tenants;
mod verify;
mod where_user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use crate::config::{Config, Overrides};
use crate::db::Database;
use crate::db::dialect::Dialect;
use crate::error::{self, UsageError};
use crate::schema::render::Renderer;

#[derive(Debug, Parser)]
#[command(
    name = "pathfinder-db",
    version,
    about = "Provision, migrate and maintain the per-user schema of the Pathfinder database",
    after_help = "Exit codes: 0 success, 1 error, 2 usage or configuration error, 3 some tenants failed."
)]
pub struct Cli {
    /// Configuration file (env PATHFINDER_CONFIG) [default: ./pathfinder-db.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// sqlite://FILE, postgres://USER@HOST:PORT/DB or oracle://USER@HOST:PORT/SERVICE
    /// (env PATHFINDER_DATABASE_URL) [default: sqlite://pathfinder.db]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Print results as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing but errors
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Answer yes to confirmations (required for destructive commands without a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// File holding the master key (base64 of 32 bytes, mode 0600) that wraps users'
    /// encryption keys (env PATHFINDER_MASTER_KEY holds the key itself,
    /// PATHFINDER_MASTER_KEY_FILE a file)
    #[arg(long, global = true, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,

    /// On a fleet: only the tenants on this member database (`databases list`);
    /// for provision and import, the member to place new tenants on
    #[arg(long, global = true, value_name = "NAME")]
    pub database: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the shared system tables (idempotent)
    Init(init::Args),
    /// Print the DDL for a tenant (or the system schema) without touching a database
    Render(render::Args),
    /// Create users' tenant tables, indexes and career summary
    Provision(provision::Args),
    /// Remove users' tenant objects (asks first; --archive or --export keep the rows)
    Deprovision(deprovision::Args),
    /// List tenants with their schema version and status
    Tenants(tenants::Args),
    /// Recompute the career summary of some or all tenants
    Refresh(refresh::Args),
    /// Bring tenants to the latest (or a given) schema version, in parallel
    Migrate(migrate::Args),
    /// The fleet at a glance: tenants per version and status, failures, pending work
    Status(status::Args),
    /// Compare tenants' tables, columns and indexes with what their version should have
    Verify(verify::Args),
    /// Users' encryption keys: create, rotate the master key, verify, inventory
    Keys(keys::Args),
    /// Rows and bytes per tenant and table, the largest first; alert thresholds for monitoring
    Stats(stats::Args),
    /// Gather optimizer statistics for tenants' tables, in parallel (for cron)
    Analyze(analyze::Args),
    /// Write one tenant's rows to a self-describing file, or verify such a file
    Export(export::Args),
    /// Load an export into this database (any dialect) as a new tenant
    Import(import::Args),
    /// Row counts and order-independent checksums per tenant and table; --compare checks a copy
    Fingerprint(fingerprint::Args),
    /// Register tenants whose tables exist but that the registry does not know (baseline)
    Adopt(adopt::Args),
    /// Preflight check of the configured database: one line per check, with the fix
    Doctor(doctor::Args),
    /// Print the shell completion script (bash, zsh, fish, powershell, elvish)
    Completions(completions::Args),
    /// Print the man page (roff), or write every command's page into a folder
    Man(completions::ManArgs),
    /// Retention policies: sync policies/*.toml into the database (apply), show them (list)
    Policies(policies::Args),
    /// Archive or delete rows past their retention (run), or bring archived rows back (restore)
    Retention(retention::Args),
    /// Users' login sessions: delete the expired ones (purge)
    Sessions(sessions::Args),
    /// The audit log, newest first: filter by user, action and time; --follow watches it
    Audit(audit::Args),
    /// The application role: grant it what the application needs (apply), report drift (check)
    Grants(grants::Args),
    /// Member databases that hold tenants' tables: add, list, drain, open, remove
    Databases(databases::Args),
    /// Print the member database holding a user's tables (for the application's routing)
    Where(where_user::Args),
    /// Move tenants off draining members and from the fullest to the emptiest (bounded)
    Rebalance(rebalance::Args),
    /// Move a user's tables to another member database: copy, verify, switch, drop the source
    Move(move_tenant::Args),
}

/// What every handler gets: the configuration and the global output flags.
pub struct Context {
    pub config: Config,
    pub json: bool,
    pub quiet: bool,
    pub yes: bool,
    /// `--database NAME`: the member database the command is narrowed to.
    pub database: Option<String>,
}

impl Context {
    /// `--database NAME`, checked to name a member of this deployment.
    pub fn member_filter(
        &self,
        conn: &mut dyn crate::db::Connection,
    ) -> anyhow::Result<Option<String>> {
        let Some(name) = &self.database else {
            return Ok(None);
        };
        if crate::fleet::members::get(conn, name)
            .ok()
            .flatten()
            .is_none()
        {
            return Err(UsageError::new(format!(
                "no member database named {name}: `pathfinder-db databases list` shows them"
            ))
            .into());
        }
        Ok(Some(name.clone()))
    }

    /// Progress bars and notes go to stderr, and only to a terminal.
    pub fn show_progress(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// Prints a line of human output on stdout unless --quiet or --json.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            out(&format!("{}\n", line.as_ref()));
        }
    }

    /// A note for a person at a terminal (stderr, not with --quiet or --json).
    pub fn note(&self, line: impl AsRef<str>) {
        if self.show_progress() {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Prints a JSON document on stdout (every --json output goes through here).
    pub fn print_json(&self, value: &serde_json::Value) {
        JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
        out(&format!(
            "{}\n",
            crate::db::redact::redact(&serde_json::to_string_pretty(value).unwrap_or_default())
        ));
    }

    /// The renderer for `dialect`, with the configured templates.
    pub fn renderer(&self, dialect: Dialect) -> anyhow::Result<Renderer> {
        Ok(Renderer::new(
            dialect,
            self.config.templates_dir.as_deref(),
        )?)
    }

    /// Opens the configured database, creating or upgrading the system schema
    /// when needed: only `init` and `provision` do this.
    pub fn open_database(&self) -> anyhow::Result<(Database, Renderer)> {
        let db = Database::open(&self.config)?;
        let renderer = self.renderer(db.dialect())?;
        self.upgrade_system(db, renderer)
    }

    /// Opens the configured database, upgrading its system schema when it is
    /// older, but creating nothing (`migrate`: a CI job with a mistyped URL
    /// fails instead of migrating a new, empty database).
    pub fn open_database_upgrading(&self) -> anyhow::Result<(Database, Renderer)> {
        let (db, renderer) = self.open_existing_schema(false)?;
        self.upgrade_system(db, renderer)
    }

    fn upgrade_system(
        &self,
        db: Database,
        renderer: Renderer,
    ) -> anyhow::Result<(Database, Renderer)> {
        db.check_writable()?;
        let mut session = db.connect()?;
        if crate::migrate::system_is_current(session.system(), &renderer)? {
            return Ok((db, renderer));
        }
        let applied = crate::migrate::init_system(session.system(), &renderer)?;
        if !applied.versions.is_empty() {
            self.note(format!(
                "initialized the system schema in {} (version {})",
                db.display_url(),
                applied.versions.last().copied().unwrap_or(0)
            ));
        }
        drop(session);
        Ok((db, renderer))
    }

    /// Opens the configured database for a command that writes but must not
    /// create anything: the system schema must exist at the current version.
    pub fn open_database_existing(&self) -> anyhow::Result<(Database, Renderer)> {
        let (db, renderer) = self.open_existing_schema(false)?;
        db.check_writable()?;
        let mut session = db.connect()?;
        if !crate::migrate::system_is_current(session.system(), &renderer)? {
            return Err(UsageError::new(format!(
                "the system schema of {} is older than this pathfinder-db: run `pathfinder-db init` to upgrade it",
                db.display_url()
            ))
            .into());
        }
        drop(session);
        Ok((db, renderer))
    }

    /// Opens the configured database for reading only: nothing is created or
    /// upgraded, and a database without the system schema is a usage error.
    /// For a command with a dry run: the database opened read-only for the
    /// dry run, else ready to be changed ([`Self::open_database_existing`]).
    pub fn open_for(&self, dry_run: bool) -> anyhow::Result<(Database, Renderer)> {
        if dry_run {
            self.open_database_read_only()
        } else {
            self.open_database_existing()
        }
    }

    pub fn open_database_read_only(&self) -> anyhow::Result<(Database, Renderer)> {
        self.open_existing_schema(true)
    }

    fn open_existing_schema(&self, read_only: bool) -> anyhow::Result<(Database, Renderer)> {
        let db = Database::open(&self.config)?;
        let renderer = self.renderer(db.dialect())?;
        let missing = || {
            UsageError::new(format!(
                "{} has no pathfinder-db system schema: check the database URL, or run `pathfinder-db init` first",
                db.display_url()
            ))
        };
        if !db.exists() {
            return Err(missing().into());
        }
        let mut session = if read_only {
            db.connect_read_only()?
        } else {
            db.connect()?
        };
        let applied = crate::migrate::engine::applied_versions(
            session.system(),
            crate::migrate::SYSTEM_HISTORY,
        )?;
        if applied.is_empty() {
            return Err(missing().into());
        }
        drop(session);
        Ok((db, renderer))
    }

    /// The number of workers: `--jobs`, else the configuration's, lowered
    /// (with a note) to what the database accepts.
    pub fn jobs(&self, db: &Database, asked: Option<u32>) -> anyhow::Result<usize> {
        let requested = asked.map(|j| j as usize).unwrap_or(self.config.jobs);
        let (jobs, note) = db.cap_jobs(requested)?;
        if let Some(note) = note
            && !self.quiet
        {
            eprintln!("note: {note}");
        }
        Ok(jobs)
    }

    /// The sessions a command may open in all over a fleet, where `jobs` is
    /// per member: `max_jobs` (never below `jobs`), lowered to what the
    /// catalog accepts (every session holds a catalog connection). Only
    /// asked when the work spans more than one member.
    pub fn overall_jobs(
        &self,
        db: &Database,
        jobs: usize,
        members: usize,
    ) -> anyhow::Result<usize> {
        if members <= 1 {
            return Ok(jobs);
        }
        let wanted = self.config.max_jobs.max(jobs).min(jobs * members);
        Ok(db.cap_jobs(wanted)?.0.max(jobs))
    }

    /// Asks before a destructive step. Without a terminal, refuses unless --yes.
    pub fn confirm(&self, question: &str) -> anyhow::Result<()> {
        if self.yes {
            return Ok(());
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(UsageError::new(format!(
                "refusing to proceed without confirmation: {} (no terminal to ask on: pass --yes to confirm)", question.trim_end_matches('?')
            ))
            .into());
        }
        let ok = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .map_err(|e| anyhow::anyhow!("cannot read the answer: {e}"))?;
        if ok {
            Ok(())
        } else {
            Err(UsageError::new("cancelled: nothing was changed").into())
        }
    }
}

/// Writes to stdout. A closed pipe (`pathfinder-db render alice | head`) ends
/// the program quietly, as other command-line tools do, instead of a panic.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(error::EXIT_ERROR as i32);
    }
}

/// `--jobs N`: at least 1, for every command that works in parallel.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JobsArg {
    /// Connections working in parallel [default: jobs from the config, else 4]
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
}

/// Parses the arguments, runs the command and returns the exit code. Errors
/// are printed as one line on stderr.
pub fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                error::EXIT_USAGE
            } else {
                error::EXIT_OK
            };
            // `--json` asked for a document: a usage error is one too.
            let json = std::env::args()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            if json && code == error::EXIT_USAGE {
                let kind = e.kind().as_str().unwrap_or("invalid arguments").to_string();
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "error": format!("{kind}: see `pathfinder-db --help`"),
                        "exit_code": code,
                        "failed": [],
                    }))
                    .unwrap_or_default()
                ));
            }
            match dash_value_hint(&e, std::env::args().skip(1)) {
                // Clap's own tip names only the first letter: ours replaces it.
                Some(hint) => {
                    let text = e.render().to_string();
                    let mut lines: Vec<&str> = Vec::new();
                    for line in text.lines() {
                        let blank_again = line.trim().is_empty()
                            && lines.last().is_some_and(|l| l.trim().is_empty());
                        if !line.trim_start().starts_with("tip: to pass '") && !blank_again {
                            lines.push(line);
                        }
                    }
                    eprintln!("{}\n{hint}", lines.join("\n").trim_end());
                }
                None => {
                    let _ = e.print();
                }
            }
            return code;
        }
    };
    let json = cli.json;
    match run_cli(cli) {
        Ok(code) => code,
        Err(err) => {
            let message = error::one_line(&err);
            eprintln!("error: {message}");
            let code = error::exit_code(&err);
            // A `--json` reader (`| jq`) gets a document on failure too,
            // unless the command printed its own before it failed.
            if json && !JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed) {
                out(&format!(
                    "{}\n",
                    crate::db::redact::redact(
                        &serde_json::to_string_pretty(&serde_json::json!({
                            "error": message,
                            "exit_code": code,
                            "failed": [],
                        }))
                        .unwrap_or_default()
                    )
                ));
            }
            code
        }
    }
}

/// Whether this run printed its `--json` document.
static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When a value that starts with `-` (a username such as `-bob`) was read
/// as options, how to pass it: after `--`. Only the command's name is
/// repeated: other arguments may hold secrets.
fn dash_value_hint(e: &clap::Error, args: impl Iterator<Item = String>) -> Option<String> {
    use clap::error::ErrorKind;
    if !matches!(
        e.kind(),
        ErrorKind::UnknownArgument | ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let commands: Vec<String> = <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut command = None;
    for arg in args.take_while(|a| a != "--") {
        if command.is_none() && commands.contains(&arg) {
            command = Some(arg);
            continue;
        }
        let looks_like_name = arg.len() > 2
            && arg.starts_with('-')
            && !arg.starts_with("--")
            && arg[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if looks_like_name {
            let command = command.unwrap_or_else(|| "<command>".into());
            return Some(format!(
                "hint: {arg:?} was read as options because it starts with '-'; to pass it as a value (a username, a file), put `--` before it, after every option: `pathfinder-db {command} [options] -- {arg}`"
            ));
        }
    }
    None
}

/// Whether `--database NAME` means something to `command` (elsewhere it
/// would be ignored silently, and a DBA would take the whole fleet's answer
/// for one member's).
fn takes_database(command: &Command) -> bool {
    matches!(
        command,
        Command::Provision(_)
            | Command::Import(_)
            | Command::Migrate(_)
            | Command::Verify(_)
            | Command::Status(_)
            | Command::Stats(_)
            | Command::Refresh(_)
            | Command::Analyze(_)
            | Command::Fingerprint(_)
            | Command::Retention(_)
            | Command::Adopt(_)
            | Command::Tenants(_)
    )
}

/// Runs a parsed command line; returns the exit code of a run that completed.
pub fn run_cli(cli: Cli) -> anyhow::Result<u8> {
    let overrides = Overrides {
        config: cli.config.clone(),
        database_url: cli.database_url.clone(),
        dialect: match &cli.command {
            Command::Render(args) => args.dialect,
            _ => None,
        },
        jobs: None,
        master_key_file: cli.master_key_file.clone(),
    };
    // Completions and man pages come from the command line alone: a broken
    // configuration file must not stop them.
    match &cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Man(args) => return completions::man(args),
        _ => {}
    }
    if cli.database.is_some() && !takes_database(&cli.command) {
        return Err(UsageError::new(
            "--database narrows the tenant commands (migrate, verify, status, stats, refresh, analyze, fingerprint, retention, adopt, tenants) and places provision and import; this command does not take it",
        )
        .into());
    }
    let config = Config::load(&overrides)?;
    let ctx = Context {
        config,
        json: cli.json,
        quiet: cli.quiet,
        yes: cli.yes,
        database: cli.database.clone(),
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Render(args) => render::run(&ctx, args),
        Command::Provision(args) => provision::run(&ctx, args),
        Command::Deprovision(args) => deprovision::run(&ctx, args),
        Command::Tenants(args) => tenants::run(&ctx, args),
        Command::Refresh(args) => refresh::run(&ctx, args),
        Command::Migrate(args) => migrate::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Verify(args) => verify::run(&ctx, args),
        Command::Keys(args) => keys::run(&ctx, args),
        Command::Stats(args) => stats::run(&ctx, args),
        Command::Analyze(args) => analyze::run(&ctx, args),
        Command::Export(args) => export::run(&ctx, args),
        Command::Import(args) => import::run(&ctx, args),
        Command::Fingerprint(args) => fingerprint::run(&ctx, args),
        Command::Adopt(args) => adopt::run(&ctx, args),
        Command::Doctor(args) => doctor::run(&ctx, args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => completions::man(&args),
        Command::Policies(args) => policies::run(&ctx, args),
        Command::Retention(args) => retention::run(&ctx, args),
        Command::Sessions(args) => sessions::run(&ctx, args),
        Command::Audit(args) => audit::run(&ctx, args),
        Command::Grants(args) => grants::run(&ctx, args),
        Command::Databases(args) => databases::run(&ctx, args),
        Command::Where(args) => where_user::run(&ctx, args),
        Command::Rebalance(args) => rebalance::run(&ctx, args),
        Command::Move(args) => move_tenant::run(&ctx, args),
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar(ctx: &Context, len: usize, what: &str) -> indicatif::ProgressBar {
    if !ctx.show_progress() || len < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Reads usernames from a file, one per line; blank lines and `#` comments skipped.
pub fn read_names_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut names = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A line that is no username is named by its number, never quoted:
        // the file may be the wrong one (a key file), and its text a secret.
        if let Err(crate::schema::tenant::NameError::Unsafe { rule, .. }) =
            crate::schema::tenant::Username::parse(line)
        {
            return Err(UsageError::new(format!(
                "{} line {}: not a safe username ({rule}; the line is not shown); one username per line, # for comments: is it the right file?",
                path.display(),
                number + 1
            ))
            .into());
        }
        names.push(line.to_string());
    }
    Ok(names)
}

/// The registry rows of the named users (an unknown name is a usage error),
/// or with `all`, of every tenant `keep` accepts.
/// With `--database NAME`, only the tenants on that member.
pub fn select_tenants(
    ctx: &Context,
    conn: &mut dyn crate::db::Connection,
    wanted: &[crate::schema::tenant::Username],
    all: bool,
    keep: impl Fn(&crate::catalog::registry::TenantRecord) -> bool,
) -> anyhow::Result<Vec<crate::catalog::registry::TenantRecord>> {
    let member = ctx.member_filter(conn)?;
    let on_member = |t: &crate::catalog::registry::TenantRecord| {
        member.as_deref().is_none_or(|m| t.database == m)
    };
    if all {
        return Ok(crate::catalog::registry::list(conn, false)?
            .into_iter()
            .filter(|t| keep(t) && on_member(t))
            .collect());
    }
    wanted
        .iter()
        .map(|user| {
            crate::catalog::registry::get(conn, user.as_str())?.ok_or_else(|| {
                UsageError::new(format!(
                    "no tenant named {user}: `pathfinder-db tenants` lists them"
                ))
                .into()
            })
        })
        .collect()
}

/// Parses usernames, refusing the whole list if any is invalid.
pub fn parse_usernames(
    ctx: &Context,
    names: &[String],
) -> anyhow::Result<Vec<crate::schema::tenant::Username>> {
    let dialect = ctx.config.url_dialect().ok();
    let mut out = Vec::with_capacity(names.len());
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let user = crate::schema::tenant::Username::parse(name).map_err(|e| e.usage(dialect))?;
        if seen.insert(user.clone()) {
            out.push(user);
        }
    }
    Ok(out)
}

/// What one command did over a list of tenants, run by [`for_tenants`].
pub struct TenantRun<'t, R> {
    pub done: Vec<(&'t crate::catalog::registry::TenantRecord, R)>,
    /// `{"username", "error"}` objects, as every `--json` document lists failures.
    pub failed: Vec<serde_json::Value>,
    failed_names: Vec<String>,
    /// `{"username", "status"}` of tenants deprovisioned (or being) while the
    /// run went on: not failures, nothing is left to do for them.
    pub skipped: Vec<serde_json::Value>,
    total: usize,
}

impl<R> TenantRun<'_, R> {
    /// 0 when nothing failed; exit 3 when some did; an error when all did.
    pub fn exit(&self, what: &str) -> anyhow::Result<u8> {
        if self.failed_names.is_empty() {
            Ok(error::EXIT_OK)
        } else if !self.done.is_empty() {
            Err(crate::error::PartialFailure::new(self.total, &self.failed_names).into())
        } else {
            Err(anyhow::anyhow!("{what} failed for every tenant"))
        }
    }
}

/// Runs `work` for every tenant on the shared worker pool (`--jobs` per
/// member, the overall limit in all; read-only sessions for work that only
/// reads), with a progress bar; each failure is printed on stderr as it is
/// collected.
pub fn for_tenants<'t, R: Send>(
    ctx: &Context,
    db: &Database,
    tenants: &'t [crate::catalog::registry::TenantRecord],
    jobs: usize,
    doing: &str,
    read_only: bool,
    work: impl Fn(
        &mut crate::db::Session<'_>,
        &crate::catalog::registry::TenantRecord,
    ) -> anyhow::Result<R>
    + Sync,
) -> TenantRun<'t, R> {
    let members = distinct(tenants.iter().map(|t| t.database.as_str()));
    // A member's tenants are not failed for want of a catalog connection
    // count: on a failed lookup the pool stays at `jobs` in all.
    let limit = ctx.overall_jobs(db, jobs, members).unwrap_or(jobs);
    let bar = progress_bar(ctx, tenants.len(), doing);
    let done = |_: &_, _: &_| bar.inc(1);
    let options = crate::parallel::PoolOptions {
        jobs,
        read_only,
        fail_fast: false,
    };
    let by_member = crate::parallel::ByMember {
        member_of: |t: &crate::catalog::registry::TenantRecord| t.database.as_str(),
        limit,
    };
    let results = crate::parallel::for_each_by_member(db, tenants, options, by_member, work, done);
    bar.finish_and_clear();
    collect_run(db, tenants, results)
}

/// For a tenant that failed: its status now when it was live as the run
/// began and has been deprovisioned (or is being) since; None otherwise, or
/// when the registry cannot be read (the failure stands).
fn removed_meanwhile<'d>(
    db: &'d Database,
    session: &mut Option<crate::db::Session<'d>>,
    tenant: &crate::catalog::registry::TenantRecord,
) -> Option<String> {
    use crate::catalog::registry::{self, Status};
    if !tenant.status.is_live() {
        return None;
    }
    if session.is_none() {
        *session = db.connect_read_only().ok();
    }
    let now = registry::get(session.as_mut()?.system(), &tenant.username).ok()?;
    match now.map(|r| r.status) {
        None => Some("removed".to_string()),
        Some(s @ (Status::Deprovisioned | Status::Deprovisioning)) => Some(s.to_string()),
        Some(_) => None,
    }
}

/// How many different values `names` holds (members among tenants).
pub fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.collect::<std::collections::HashSet<_>>().len()
}

fn collect_run<'t, R>(
    db: &Database,
    tenants: &'t [crate::catalog::registry::TenantRecord],
    results: Vec<Option<anyhow::Result<R>>>,
) -> TenantRun<'t, R> {
    let mut run = TenantRun {
        done: Vec::new(),
        failed: Vec::new(),
        failed_names: Vec::new(),
        skipped: Vec::new(),
        total: tenants.len(),
    };
    let mut session = None;
    for (tenant, result) in tenants.iter().zip(results) {
        match result {
            Some(Ok(value)) => run.done.push((tenant, value)),
            Some(Err(_)) if let Some(now) = removed_meanwhile(db, &mut session, tenant) => {
                // A routine deprovisioning is no failure of a nightly job.
                eprintln!(
                    "note: {}: skipped: {now} since the run began",
                    tenant.username
                );
                run.skipped
                    .push(serde_json::json!({"username": tenant.username, "status": now}));
            }
            Some(Err(err)) => {
                let message = error::one_line(&err);
                eprintln!("error: {}: {message}", tenant.username);
                run.failed_names.push(tenant.username.clone());
                run.failed
                    .push(serde_json::json!({"username": tenant.username, "error": message}));
            }
            None => {}
        }
    }
    run
}
