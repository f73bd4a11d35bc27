use clap::Subcommand;

use crate::fleet::lost;
use crate::fleet::members::{self, MemberState};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Add a member database for tenants' tables (checked first: reachable, same dialect, privileges)
    Add(AddArgs),
    /// Show every member: state, tenants, capacity, bytes, reachable
    List,
    /// Place no new tenants on a member (its tenants stay until moved)
    Drain(NameArg),
    /// Place new tenants on a member again
    Open(NameArg),
    /// Forget a member that holds no tenant (or, lost for good, forget its tenants too)
    Remove(RemoveArgs),
    /// Point a member lost at its place at a copy of it elsewhere (a restored backup, its disk mounted elsewhere)
    SetUrl(SetUrlArgs),
    /// Change how many tenants a member may hold
    SetCapacity(CapacityArgs),
    /// Count each member's tenants again from the registry (when `doctor` says the kept counts disagree)
    Recount,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The member's name (lower case, e.g. pg2)
    pub name: String,
    /// Its URL without a password (the password goes in PATHFINDER_DATABASE_<NAME>_PASSWORD
    /// or a file named by `password_file` under `[members.NAME]` in the configuration file);
    /// on SQLite a folder for tenant files
    pub url: String,
    /// How many tenants it may hold [default: no limit]
    #[arg(long, value_name = "N")]
    pub capacity: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The member's name (`databases list`)
    pub name: String,
    /// The member is lost for good (it cannot be reached, and no copy of it is left): remove it
    /// anyway, deprovisioning in the registry the tenants whose tables were only there (their
    /// keys and catalog rows stay; `provision USER` starts one afresh). Refused while it answers
    #[arg(long)]
    pub forget_tenants: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetUrlArgs {
    /// The member's name (`databases list`)
    pub name: String,
    /// Where its copy is now, without a password (on SQLite the folder holding its tenant files)
    pub url: String,
    /// Also while the member still answers at its recorded URL: for the same database under
    /// another address (never for a copy: what was written since would be stranded)
    #[arg(long)]
    pub force: bool,
    /// This catalog is itself a restored copy (a backup being verified): point its member at
    /// the member's restored copy although the original still answers (never on production)
    #[arg(long, conflicts_with = "force")]
    pub clone: bool,
    /// Accept a copy that lacks some tenants' tables (a backup older than them); they are then
    /// reported missing until deprovisioned
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// The member's name (`databases list`)
    pub name: String,
    /// How many tenants it may hold
    #[arg(required_unless_present = "unlimited", conflicts_with = "unlimited")]
    pub capacity: Option<i64>,
    /// No limit
    #[arg(long)]
    pub unlimited: bool,
}

#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// The member's name (`databases list`)
    pub name: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // A name that could be no member's (empty, upper case, a typo with a
    // space) is said to be invalid rather than looked up.
    let named = match &args.command {
        Sub::Drain(a) | Sub::Open(a) => Some(&a.name),
        Sub::Remove(a) => Some(&a.name),
        Sub::SetUrl(a) => Some(&a.name),
        Sub::SetCapacity(a) => Some(&a.name),
        Sub::Add(_) | Sub::List | Sub::Recount => None,
    };
    if let Some(name) = named {
        members::validate_name(name)?;
    }
    match args.command {
        Sub::List => list(ctx),
        Sub::Add(a) => {
            let (db, _) = ctx.open_database_existing()?;
            let mut session = db.connect()?;
            let m = members::add(&mut session, &a.name, &a.url, a.capacity)?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(&m)?);
            } else {
                ctx.say(format!(
                    "added member {} ({}), capacity {}",
                    m.name,
                    crate::db::redact_url(m.url.as_deref().unwrap_or_default()),
                    m.capacity
                        .map(|c| c.to_string())
                        .unwrap_or("unlimited".into())
                ));
            }
            Ok(0)
        }
        Sub::SetCapacity(a) => {
            let (db, _) = ctx.open_database_existing()?;
            let mut session = db.connect()?;
            let tenants = members::set_capacity(&mut session, &a.name, a.capacity)?;
            let shown = a
                .capacity
                .map(|c| c.to_string())
                .unwrap_or("unlimited".into());
            if ctx.json {
                ctx.print_json(&serde_json::json!({
                    "name": a.name, "capacity": a.capacity, "tenants": tenants,
                }));
            } else if a.capacity.is_some_and(|c| tenants > c) {
                ctx.say(format!(
                    "member {} capacity {shown}: it holds {tenants} tenant(s), so none is placed there and `pathfinder-db rebalance` moves the excess to open members with a capacity and room",
                    a.name
                ));
            } else {
                ctx.say(format!(
                    "member {} capacity {shown} ({tenants} tenant(s) on it)",
                    a.name
                ));
            }
            Ok(0)
        }
        Sub::Drain(a) => set_state(ctx, &a.name, MemberState::Draining),
        Sub::Open(a) => set_state(ctx, &a.name, MemberState::Open),
        Sub::Remove(a) if a.forget_tenants => forget(ctx, &a.name),
        Sub::Remove(a) => {
            let (db, _) = ctx.open_database_existing()?;
            let mut session = db.connect()?;
            members::remove(&mut session, &a.name)?;
            if ctx.json {
                ctx.print_json(&serde_json::json!({"name": a.name, "removed": true}));
            }
            ctx.say(format!("removed member {}", a.name));
            Ok(0)
        }
        Sub::SetUrl(a) => {
            let (db, _) = ctx.open_database_existing()?;
            let mut session = db.connect()?;
            let done = lost::set_url(
                &mut session,
                &a.name,
                &a.url,
                lost::Allow {
                    force: a.force,
                    clone: a.clone,
                    missing: a.allow_missing,
                },
            )?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(&done)?);
            } else if done.unchanged {
                ctx.say(format!(
                    "member {} is at {} already: nothing changed",
                    done.name, done.url
                ));
            } else {
                ctx.say(format!(
                    "member {} is now {}: the tables of {} tenant(s) found there",
                    done.name, done.url, done.tenants
                ));
                if !done.older.is_empty() {
                    let list: Vec<String> = done
                        .older
                        .iter()
                        .map(|o| {
                            format!("{} (version {}, was {})", o.username, o.version, o.recorded)
                        })
                        .collect();
                    ctx.say(format!(
                        "older there than recorded, now recorded at their version: {}; `pathfinder-db migrate --all` brings them up",
                        list.join(", ")
                    ));
                }
                if !done.missing.is_empty() {
                    ctx.say(format!(
                        "missing there: {} (deprovision them, then provision them afresh)",
                        done.missing.join(", ")
                    ));
                }
            }
            Ok(0)
        }
        Sub::Recount => {
            let (db, _) = ctx.open_database_existing()?;
            let mut session = db.connect()?;
            let changed = members::recount(&mut session)?;
            if ctx.json {
                let doc: Vec<_> = changed
                    .iter()
                    .map(|(name, kept, counted)| {
                        serde_json::json!({"name": name, "was": kept, "tenants": counted})
                    })
                    .collect();
                ctx.print_json(&serde_json::json!({ "changed": doc }));
            } else if changed.is_empty() && members::remote(session.system())?.is_empty() {
                ctx.say("no member databases: nothing to count");
            } else if changed.is_empty() {
                ctx.say("every member's count agrees with the registry: nothing changed");
            } else {
                for (name, kept, counted) in &changed {
                    ctx.say(format!("member {name}: {kept} -> {counted} tenants"));
                }
            }
            Ok(0)
        }
    }
}

/// `databases remove NAME --forget-tenants`: shows what is forgotten,
/// asks, then forgets it in one catalog transaction.
fn forget(ctx: &Context, name: &str) -> anyhow::Result<u8> {
    let (db, _) = ctx.open_database_existing()?;
    let mut session = db.connect()?;
    let plan = lost::plan_forget(&mut session, name)?;
    let mut what = vec![format!(
        "{} tenant(s) whose tables were only there are forgotten (deprovisioned: their rows are lost with it)",
        plan.forgotten.len()
    )];
    if !plan.forgotten.is_empty() {
        what[0].push_str(&format!(": {}", plan.forgotten.join(", ")));
    }
    for (user, source) in &plan.back_to_source {
        what.push(format!(
            "{user} goes back to {source}, which still holds it"
        ));
    }
    for user in &plan.moves_cancelled {
        what.push(format!("{user}'s move to {name} is cancelled"));
    }
    ctx.confirm(&format!(
        "{}. Remove member {name}: {}?",
        plan.unreachable,
        what.join("; ")
    ))?;
    lost::forget(&mut session, &plan)?;
    if ctx.json {
        // Tenants named by `username`, as in every --json document.
        let mut tenants: Vec<serde_json::Value> = plan
            .forgotten
            .iter()
            .map(|u| serde_json::json!({"username": u, "outcome": "forgotten"}))
            .collect();
        tenants.extend(plan.back_to_source.iter().map(|(u, source)| {
            serde_json::json!({"username": u, "outcome": "back_to_source", "database": source})
        }));
        tenants.extend(
            plan.moves_cancelled
                .iter()
                .map(|u| serde_json::json!({"username": u, "outcome": "move_cancelled"})),
        );
        let partial: Vec<serde_json::Value> = plan
            .partial_copies
            .iter()
            .map(|(u, m)| serde_json::json!({"username": u, "database": m}))
            .collect();
        ctx.print_json(&serde_json::json!({
            "name": plan.name,
            "removed": true,
            "unreachable": plan.unreachable,
            "tenants": tenants,
            "partial_copies": partial,
            "failed": [],
        }));
    } else {
        ctx.say(format!(
            "removed member {name}: {} tenant(s) forgotten, {} back on their source, {} move(s) cancelled",
            plan.forgotten.len(),
            plan.back_to_source.len(),
            plan.moves_cancelled.len()
        ));
        if !plan.forgotten.is_empty() {
            ctx.say(format!(
                "`pathfinder-db provision {}` starts a forgotten tenant afresh",
                plan.forgotten[0]
            ));
        }
        for (user, member) in &plan.partial_copies {
            ctx.say(format!(
                "{user}: the unverified copy its unfinished move made may remain on {member}, untouched (its tables there, or on SQLite {user}'s `.db` or `.db.moving` file in its folder): drop it by hand once it is not needed"
            ));
        }
    }
    Ok(0)
}

fn set_state(ctx: &Context, name: &str, state: MemberState) -> anyhow::Result<u8> {
    let (db, _) = ctx.open_database_existing()?;
    let mut session = db.connect()?;
    members::change_state(&mut session, name, state)?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({"name": name, "state": state.as_str()}));
    }
    ctx.say(match state {
        MemberState::Draining => {
            format!("member {name} is draining: no new tenants are placed on it")
        }
        MemberState::Open => format!("member {name} is open for new tenants"),
    });
    Ok(0)
}

fn list(ctx: &Context) -> anyhow::Result<u8> {
    let (db, _) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let report = members::report(&mut session)?;
    let unreachable = report.iter().filter(|m| !m.reachable).count();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "databases": report }));
    } else {
        ctx.say(format!(
            "{:<16} {:<9} {:>8} {:>9} {:>12}  {}",
            "member", "state", "tenants", "capacity", "bytes", "url"
        ));
        for m in &report {
            let url = match &m.member.url {
                None => format!("{} (catalog)", db.display_url()),
                Some(u) => crate::db::redact_url(u),
            };
            ctx.say(format!(
                "{:<16} {:<9} {:>8} {:>9} {:>12}  {}{}",
                m.member.name,
                m.member.state.as_str(),
                m.tenants,
                m.member
                    .capacity
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                m.bytes.map(|b| b.to_string()).unwrap_or("?".into()),
                url,
                m.error
                    .as_deref()
                    .map(|e| format!("  UNREACHABLE: {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    // Unreachable members are a partial answer.
    Ok(if unreachable > 0 { 3 } else { 0 })
}
