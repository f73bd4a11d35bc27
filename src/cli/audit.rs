use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::catalog::audit_log::{self, ActionFilter, Filter, Follower, LogEntry, UserFilter};
use crate::error::UsageError;

use super::Context;

/// How often `--follow` asks for new rows.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// The longest message shown in the table (`--json` has it whole).
const MESSAGE_WIDTH: usize = 80;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only rows about this user: its tenant operations and keys, sweeps of its tables,
    /// rows carrying its pf_users id
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Only this action (tenant.provision), or every action with a prefix ending in . or *
    /// (retention., tenant.*)
    #[arg(long, value_name = "ACTION", value_parser = ActionFilter::parse)]
    pub action: Option<ActionFilter>,

    /// Rows written at or after TIME: a date or date-time in UTC (2026-01-31,
    /// "2026-01-31 10:00:00", 2026-01-31T10:00:00Z) or an age (90m, 2h, 7d)
    #[arg(long, value_name = "TIME", value_parser = TimeArg::parse)]
    pub since: Option<TimeArg>,

    /// Rows written before TIME (same forms as --since)
    #[arg(long, value_name = "TIME", value_parser = TimeArg::parse, conflicts_with = "follow")]
    pub until: Option<TimeArg>,

    /// At most N rows, the newest
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,

    /// Keep printing rows as they are written (oldest first, after the newest N) until
    /// interrupted
    #[arg(long)]
    pub follow: bool,
}

/// `--since` / `--until`: a point in time, or an age counted back from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    At(PrimitiveDateTime),
    Ago(Duration),
}

impl TimeArg {
    pub fn parse(text: &str) -> Result<TimeArg, String> {
        let bad = || {
            format!(
                "{text:?} is not a time: use a date or date-time in UTC (2026-01-31, \"2026-01-31 10:00:00\", 2026-01-31T10:00:00Z) or an age with a unit (90m, 2h, 7d)"
            )
        };
        let s = text.trim();
        if let Ok(at) = crate::db::postgres::parse_timestamp(s) {
            return Ok(TimeArg::At(at));
        }
        // A bare number has no unit to say what it counts; a run of more
        // than 9 digits is no age anyone means (and would overflow).
        let longest_digits = s
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        if s.chars().all(|c| c.is_ascii_digit()) || longest_digits > 9 {
            return Err(bad());
        }
        super::retention::parse_duration(s)
            .map(TimeArg::Ago)
            .map_err(|_| bad())
    }

    /// The point in time, UTC, with ages counted back from `now`.
    pub fn resolve(self, now: OffsetDateTime) -> PrimitiveDateTime {
        let now = now.to_offset(time::UtcOffset::UTC);
        let now = PrimitiveDateTime::new(now.date(), now.time());
        match self {
            TimeArg::At(at) => at,
            TimeArg::Ago(age) => time::Duration::try_from(age)
                .ok()
                .and_then(|age| now.checked_sub(age))
                .unwrap_or(PrimitiveDateTime::MIN),
        }
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let user = args
        .user
        .as_deref()
        .map(|u| super::parse_usernames(ctx, &[u.to_string()]).map(|mut v| v.remove(0)))
        .transpose()?;
    let now = OffsetDateTime::now_utc();
    let since = args.since.map(|t| t.resolve(now));
    let until = args.until.map(|t| t.resolve(now));
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(UsageError::new(
            "--since is not before --until: no row can match; give an earlier --since or a later --until",
        )
        .into());
    }
    let (db, _renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let filter = Filter {
        user: user
            .map(|u| UserFilter::of(session.system(), &u))
            .transpose()?,
        action: args.action,
        since,
        until,
    };
    // The follower starts first, so a row written meanwhile is in the page
    // below or in its first poll.
    let follower = args
        .follow
        .then(|| Follower::start(session.system(), filter.clone()))
        .transpose()?;
    let mut entries = audit_log::newest(session.system(), &filter, args.limit)?;
    let Some(mut follower) = follower else {
        if entries.is_empty() && !ctx.json {
            ctx.say("no audit rows match");
        } else {
            Table::new(&entries).show(ctx, &entries, true);
        }
        return Ok(0);
    };
    // Like `tail -f`: the newest rows, oldest first, then each new one below.
    entries.reverse();
    let table = Table::new(&entries);
    table.show(ctx, &entries, true);
    follower.shown(&entries);
    loop {
        std::thread::sleep(POLL_EVERY);
        let fresh = follower.poll(session.system())?;
        if !fresh.is_empty() {
            table.show(ctx, &fresh, false);
        }
    }
}

/// The table for people: column widths from the first rows shown, so the
/// rows `--follow` adds line up with them.
struct Table {
    time: usize,
    action: usize,
    entity: usize,
}

impl Table {
    fn new(entries: &[LogEntry]) -> Table {
        let widest = |f: fn(&LogEntry) -> usize, min: usize| {
            entries.iter().map(f).max().unwrap_or(0).max(min)
        };
        Table {
            time: widest(|e| e.created_at.len(), 20),
            action: widest(|e| printable(&e.action).len(), 18),
            entity: widest(
                |e| e.entity_id.as_deref().map_or(0, |t| printable(t).len()),
                12,
            ),
        }
    }

    /// `entries` as table rows, or with `--json` as one `{"entries": [...]}`
    /// document (a batch of `--follow` too).
    fn show(&self, ctx: &Context, entries: &[LogEntry], header: bool) {
        if ctx.json {
            ctx.print_json(&serde_json::json!({ "entries": entries }));
            return;
        }
        let (time, action, entity) = (self.time, self.action, self.entity);
        if header {
            ctx.say(format!(
                "{:time$}  {:action$}  {:entity$}  {:7}  {:>8}  ERROR / DETAILS",
                "TIME", "ACTION", "ENTITY", "OUTCOME", "DURATION"
            ));
        }
        for e in entries {
            let line = format!(
                "{:time$}  {:action$}  {:entity$}  {:7}  {:>8}  {}",
                e.created_at,
                printable(&e.action),
                printable(e.entity_id.as_deref().unwrap_or("-")),
                printable(&e.outcome),
                e.duration_ms.map(duration).unwrap_or_else(|| "-".into()),
                message(e)
            );
            ctx.say(line.trim_end());
        }
    }
}

/// `text` with control characters escaped (`\u{1b}`): the application
/// writes audit rows too, and an escape sequence in one must not act on the
/// terminal of whoever reads the log.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `850ms`, `12.3s`, `4m05s`, `2h07m`.
fn duration(ms: i64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// The error of a failed row, else its details, on one line and shortened.
fn message(e: &LogEntry) -> String {
    let full = match (&e.error, &e.details) {
        (Some(error), _) => error.clone(),
        (None, Some(serde_json::Value::String(s))) => s.clone(),
        (None, Some(details)) => details.to_string(),
        (None, None) => String::new(),
    };
    let line = printable(&full.split_whitespace().collect::<Vec<_>>().join(" "));
    if line.chars().count() <= MESSAGE_WIDTH {
        return line;
    }
    let mut short: String = line.chars().take(MESSAGE_WIDTH - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> PrimitiveDateTime {
        crate::db::postgres::parse_timestamp(s).unwrap()
    }

    #[test]
    fn times_are_dates_date_times_or_ages() {
        assert_eq!(
            TimeArg::parse("2026-01-31"),
            Ok(TimeArg::At(at("2026-01-31 00:00:00")))
        );
        assert_eq!(
            TimeArg::parse("2026-01-31 10:00:00"),
            Ok(TimeArg::At(at("2026-01-31 10:00:00")))
        );
        assert_eq!(
            TimeArg::parse("2026-01-31T10:00:00.25"),
            Ok(TimeArg::At(at("2026-01-31 10:00:00.25")))
        );
        // An offset is converted to UTC.
        assert_eq!(
            TimeArg::parse("2026-01-31T12:00:00+02:00"),
            Ok(TimeArg::At(at("2026-01-31 10:00:00")))
        );
        assert_eq!(
            TimeArg::parse("2h"),
            Ok(TimeArg::Ago(Duration::from_secs(7200)))
        );
        assert_eq!(
            TimeArg::parse("7d"),
            Ok(TimeArg::Ago(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            TimeArg::parse("1h30m"),
            Ok(TimeArg::Ago(Duration::from_secs(5400)))
        );
        for bad in [
            "",
            "90",
            "yesterday",
            "2h ago",
            "2026-13-01",
            "31/01/2026",
            "-2h",
            "99999999999999999999d",
        ] {
            let err = TimeArg::parse(bad).unwrap_err();
            assert!(
                err.contains("is not a time") && err.contains("2h"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ages_count_back_from_now_in_utc() {
        let now = time::macros::datetime!(2026-02-01 12:00:00 +01:00);
        assert_eq!(
            TimeArg::Ago(Duration::from_secs(7200)).resolve(now),
            at("2026-02-01 09:00:00")
        );
        assert_eq!(
            TimeArg::Ago(Duration::from_secs(2 * 86_400)).resolve(now),
            at("2026-01-30 11:00:00")
        );
        assert_eq!(TimeArg::At(at("2026-01-31")).resolve(now), at("2026-01-31"));
        assert_eq!(
            TimeArg::Ago(Duration::from_secs(u64::MAX)).resolve(now),
            PrimitiveDateTime::MIN
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            super::printable("boom\u{1b}[2J\u{7}é"),
            "boom\\u{1b}[2J\\u{7}é"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_620_000), "2h07m");
    }
}
