//! `rebalance`: moves tenants off draining members and from the fullest
//! members to the emptiest, smallest tenants first, one verified
//! [`moves`](crate::fleet::moves) at a time, until every member with a
//! capacity is within the spread; bounded like the retention sweep
//! (`--max-moves`, `--max-runtime`, a stop file).
//!
//! Fill is live tenants over capacity. Members without a capacity (the
//! catalog, unless given one) are never targets: they are emptied only when
//! draining. A move is made only if the source stays at least as full as the
//! target after it, so two members never trade a tenant back and forth.

use std::collections::HashMap;

use serde::Serialize;

use crate::catalog::registry::{self, Status};
use crate::db::Session;
use crate::fleet::members::{self, Member, MemberState};
use crate::fleet::moves::{Drifted, Phase};
use crate::jobs::retention::{Stop, StopReason};
use crate::schema::render::Renderer;

/// How far apart members' fills may be, by default (10 percentage points).
pub const DEFAULT_SPREAD: f64 = 0.10;

#[derive(Debug)]
pub struct Options {
    pub dry_run: bool,
    pub max_moves: Option<usize>,
    /// The largest allowed difference between two members' fills (0..1).
    pub spread: f64,
    /// The configured templates (each move checks the tenant's shape).
    pub templates_dir: Option<std::path::PathBuf>,
}

/// One move, planned or made.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub username: String,
    pub from: String,
    pub to: String,
    /// The tenant's size when it was chosen.
    pub bytes: u64,
    /// Rows copied (None in a dry run).
    pub rows: Option<u64>,
    pub seconds: Option<f64>,
    /// A move an earlier run left half-way (the tenant `moving`), finished;
    /// `bytes` is then 0 (not measured).
    pub resumed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub username: String,
    pub from: String,
    pub to: String,
    pub error: String,
}

/// A tenant not moved because its tables differ from its version: nothing
/// was claimed; it is tried again once repaired.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub username: String,
    pub from: String,
    /// The first differences (`verify USER` lists them all).
    pub drift: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub moves: Vec<Step>,
    pub failed: Vec<Failure>,
    pub skipped: Vec<Skipped>,
    /// Every member within the spread and no draining member holds a tenant.
    pub balanced: bool,
    /// Why the run stopped before it was balanced: `max_moves`,
    /// `max_runtime`, `stop_file`, or `no_room` (no member may take more).
    pub stopped: Option<String>,
}

fn fill(member: &Member, tenants: i64) -> Option<f64> {
    member
        .capacity
        .filter(|c| *c > 0)
        .map(|c| tenants as f64 / c as f64)
}

/// The next (source, target) pair, or why there is none: Ok(None) when
/// balanced, Err(reason) when unbalanced but no move can help.
fn next_pair(
    all: &[Member],
    counts: &HashMap<String, i64>,
    spread: f64,
    exhausted: &[String],
) -> Result<Option<(String, String)>, &'static str> {
    let held = |m: &Member| counts.get(&m.name).copied().unwrap_or(0);
    let targets: Vec<&Member> = all
        .iter()
        .filter(|m| m.state == MemberState::Open && m.free(held(m)).is_some_and(|f| f > 0))
        .collect();
    let emptiest = |except: &str| {
        targets
            .iter()
            .filter(|m| m.name != except)
            .min_by(|a, b| {
                let (fa, fb) = (fill(a, held(a)), fill(b, held(b)));
                fa.partial_cmp(&fb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.name.cmp(&b.name))
            })
            .copied()
    };
    // Draining members first: every tenant goes.
    if let Some(source) = all
        .iter()
        .find(|m| m.state == MemberState::Draining && held(m) > 0 && !exhausted.contains(&m.name))
    {
        return match emptiest(&source.name) {
            Some(target) => Ok(Some((source.name.clone(), target.name.clone()))),
            None => Err("no_room"),
        };
    }
    let fullest = all
        .iter()
        .filter(|m| m.state == MemberState::Open && !exhausted.contains(&m.name))
        .filter_map(|m| fill(m, held(m)).map(|f| (f, m)))
        .max_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| b.1.name.cmp(&a.1.name))
        });
    let Some((source_fill, source)) = fullest else {
        return Ok(None);
    };
    let Some(target) = emptiest(&source.name) else {
        // A member over its capacity with nowhere to send the excess is
        // not balanced: say there is no room.
        if source.capacity.is_some_and(|c| held(source) > c) {
            return Err("no_room");
        }
        return Ok(None);
    };
    let target_fill = fill(target, held(target)).unwrap_or(0.0);
    let after_source = fill(source, held(source) - 1).unwrap_or(0.0);
    let after_target = fill(target, held(target) + 1).unwrap_or(0.0);
    if source_fill - target_fill <= spread || after_source < after_target {
        return Ok(None);
    }
    Ok(Some((source.name.clone(), target.name.clone())))
}

/// The active tenants of `member`, smallest first (bytes, then name).
fn smallest_first(session: &mut Session<'_>, member: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let tenants: Vec<_> = registry::list(session.system(), false)?
        .into_iter()
        .filter(|t| t.database == member && t.status == Status::Active)
        .collect();
    let (stats, _) = crate::tenants::stats::collect(session, &tenants, false, true)?;
    let mut out: Vec<(u64, String)> = stats.into_iter().map(|s| (s.bytes, s.username)).collect();
    out.sort();
    Ok(out)
}

/// The moves left half-way, as (username, source, target, switched): the
/// target the claim names while copying, the member the registry names
/// once switched.
fn interrupted(session: &mut Session<'_>) -> anyhow::Result<Vec<(String, String, String, bool)>> {
    Ok(registry::list(session.system(), false)?
        .into_iter()
        .filter_map(|t| match Phase::of(&t)? {
            Phase::Copying { target } => Some((t.username, t.database, target, false)),
            Phase::Switched { source } => Some((t.username, source, t.database, true)),
        })
        .collect())
}

/// Why the run stops before its next move, if it does.
fn stopped(options: &Options, report: &Report, stop: &Stop) -> Option<&'static str> {
    if options.max_moves.is_some_and(|n| report.moves.len() >= n) {
        return Some("max_moves");
    }
    stop.check().map(|reason| match reason {
        StopReason::MaxRuntime => "max_runtime",
        StopReason::StopFile => "stop_file",
    })
}

/// Makes `step`'s move. False when it failed or was refused for drift
/// (recorded in `report`) or another run had finished it meanwhile: no
/// step to report.
fn carry_out(
    session: &mut Session<'_>,
    renderer: &Renderer,
    options: &Options,
    step: &mut Step,
    report: &mut Report,
) -> bool {
    let templates_dir = options.templates_dir.as_deref();
    match crate::fleet::moves::run(
        session,
        renderer,
        templates_dir,
        &step.username,
        Some(&step.to),
    ) {
        Ok(outcome) if outcome.nothing_to_do => false,
        Ok(outcome) => {
            step.rows = Some(outcome.rows);
            step.seconds = Some(outcome.seconds);
            true
        }
        Err(e) => {
            if let Some(d) = e.chain().find_map(|c| c.downcast_ref::<Drifted>()) {
                report.skipped.push(Skipped {
                    username: step.username.clone(),
                    from: step.from.clone(),
                    drift: d.problems.clone(),
                });
                return false;
            }
            report.failed.push(Failure {
                username: step.username.clone(),
                from: step.from.clone(),
                to: step.to.clone(),
                error: crate::error::one_line(&e),
            });
            false
        }
    }
}

/// Runs (or with `dry_run`, plans) the moves.
pub fn run(
    session: &mut Session<'_>,
    renderer: &Renderer,
    options: &Options,
    stop: &Stop,
    mut on_step: impl FnMut(&Step),
) -> anyhow::Result<Report> {
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };
    let all = members::list(session.system())?;
    let mut counts = members::tenant_counts(session.system())?;
    // Per source, its tenants smallest first, read once.
    let mut queues: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut exhausted: Vec<String> = Vec::new();
    // Moves a killed run left half-way first: their tenants are read-only
    // until finished, and nothing else would ever finish them.
    for (username, from, to, switched) in interrupted(session)? {
        if let Some(reason) = stopped(options, &report, stop) {
            report.stopped = Some(reason.into());
            return Ok(report);
        }
        let mut step = Step {
            username: username.clone(),
            from: from.clone(),
            to: to.clone(),
            bytes: 0,
            rows: None,
            seconds: None,
            resumed: true,
        };
        if options.dry_run {
            // Copying: counted on the source and (its place taken) on the
            // target; once finished only on the target.
            if !switched {
                *counts.entry(from).or_default() -= 1;
            }
        } else if !carry_out(session, renderer, options, &mut step, &mut report) {
            continue;
        }
        on_step(&step);
        report.moves.push(step);
    }
    loop {
        if let Some(reason) = stopped(options, &report, stop) {
            report.stopped = Some(reason.into());
            break;
        }
        if !options.dry_run {
            // Provisioners may have placed tenants meanwhile.
            counts = members::tenant_counts(session.system())?;
        }
        let (from, to) = match next_pair(&all, &counts, options.spread, &exhausted) {
            Ok(Some(pair)) => pair,
            Ok(None) => {
                // A move that failed or was skipped leaves it unbalanced (exit 3).
                report.balanced = report.failed.is_empty() && report.skipped.is_empty();
                break;
            }
            Err(reason) => {
                report.stopped = Some(reason.into());
                break;
            }
        };
        if !queues.contains_key(&from) {
            let queue = smallest_first(session, &from)?;
            queues.insert(from.clone(), queue);
        }
        let queue = queues.get_mut(&from).expect("read above");
        if queue.is_empty() {
            // Its tenants are moving, failed or not active: nothing to take.
            exhausted.push(from);
            continue;
        }
        let (bytes, username) = queue.remove(0);
        // A move taken back earlier in this run (its tenant active again)
        // would only fail the same way.
        if report.failed.iter().any(|f| f.username == username) {
            continue;
        }
        let mut step = Step {
            username: username.clone(),
            from: from.clone(),
            to: to.clone(),
            bytes,
            rows: None,
            seconds: None,
            resumed: false,
        };
        if options.dry_run {
            *counts.entry(from).or_default() -= 1;
            *counts.entry(to).or_default() += 1;
        } else if !carry_out(session, renderer, options, &mut step, &mut report) {
            continue;
        }
        on_step(&step);
        report.moves.push(step);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, capacity: Option<i64>, state: MemberState) -> Member {
        Member {
            name: name.into(),
            url: Some(format!("/{name}")),
            state,
            capacity,
            created_at: String::new(),
        }
    }

    fn counts(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn moves_from_the_fullest_to_the_emptiest_until_within_the_spread() {
        let all = [
            member("a", Some(10), MemberState::Open),
            member("b", Some(10), MemberState::Open),
        ];
        assert_eq!(
            next_pair(&all, &counts(&[("a", 8), ("b", 0)]), 0.1, &[]),
            Ok(Some(("a".into(), "b".into())))
        );
        assert_eq!(
            next_pair(&all, &counts(&[("a", 5), ("b", 4)]), 0.1, &[]),
            Ok(None)
        );
        // Never back and forth: 2/2 against 1/2 would only swap.
        let small = [
            member("a", Some(2), MemberState::Open),
            member("b", Some(2), MemberState::Open),
        ];
        assert_eq!(
            next_pair(&small, &counts(&[("a", 2), ("b", 1)]), 0.1, &[]),
            Ok(None)
        );
    }

    #[test]
    fn a_draining_member_is_emptied_and_unlimited_members_are_never_targets() {
        let all = [
            member("catalog", None, MemberState::Open),
            member("a", Some(10), MemberState::Draining),
            member("b", Some(10), MemberState::Open),
        ];
        assert_eq!(
            next_pair(&all, &counts(&[("a", 1), ("b", 9)]), 0.1, &[]),
            Ok(Some(("a".into(), "b".into())))
        );
        assert_eq!(
            next_pair(&all, &counts(&[("a", 1), ("b", 10)]), 0.1, &[]),
            Err("no_room")
        );
        // Over its capacity with no member that has room: not balanced.
        let all = [
            member("catalog", None, MemberState::Open),
            member("b", Some(1), MemberState::Open),
        ];
        assert_eq!(
            next_pair(&all, &counts(&[("b", 2)]), 0.1, &[]),
            Err("no_room")
        );
        assert_eq!(next_pair(&all, &counts(&[("b", 1)]), 0.1, &[]), Ok(None));
    }
}
