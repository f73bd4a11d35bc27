use super::Context;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The tenant is `moving` (read-only for the application) until the move ends. \
                  A move that was interrupted (killed, a member down) is finished by running the \
                  same command again; `--cancel` takes it back to its source while the rows are \
                  still being copied (leaving the partial copy on a target that cannot be \
                  reached, to be dropped by hand), and finishes it once the registry names the \
                  target."
)]
pub struct Args {
    /// The user whose tables to move
    pub user: String,

    /// The member database to move them to (`pathfinder-db databases list`)
    #[arg(long, value_name = "NAME", required_unless_present = "cancel")]
    pub to: Option<String>,

    /// Take back an interrupted move (or finish it, when the target holds the tenant already)
    #[arg(long, conflicts_with = "to")]
    pub cancel: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (db, renderer) = ctx.open_database_existing()?;
    db.check_writable()?;
    let mut session = db.connect()?;
    let outcome = crate::fleet::moves::run(
        &mut session,
        &renderer,
        ctx.config.templates_dir.as_deref(),
        &args.user,
        args.to.as_deref(),
    )?;
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&outcome)?);
    } else if outcome.nothing_to_do {
        ctx.say(format!(
            "{} is on {} already: nothing to do",
            outcome.username, outcome.to
        ));
    } else if outcome.finished_instead_of_cancel {
        ctx.say(format!(
            "{} had been switched to {} already, so its move was finished, not cancelled: it is active on {}, and what was left on {} is dropped",
            outcome.username, outcome.to, outcome.to, outcome.from
        ));
    } else if outcome.partial_copy_left {
        ctx.say(format!(
            "move of {} cancelled: it is active on {} again; its partial copy stays on {}, which cannot be reached: `pathfinder-db doctor` lists it once {} is back, drop it by hand",
            outcome.username, outcome.from, outcome.to, outcome.to
        ));
    } else if outcome.cancelled {
        ctx.say(format!(
            "move of {} cancelled: it stays on {}, the copy on {} is removed",
            outcome.username, outcome.from, outcome.to
        ));
    } else if outcome.switched_already {
        ctx.say(format!(
            "finished the move of {} to {}: dropped what was left on {}, {:.2} s",
            outcome.username, outcome.to, outcome.from, outcome.seconds
        ));
    } else {
        ctx.say(format!(
            "moved {} from {} to {}: {} rows in {} tables, {:.2} s{}",
            outcome.username,
            outcome.from,
            outcome.to,
            outcome.rows,
            outcome.tables,
            outcome.seconds,
            if outcome.resumed {
                " (an interrupted move, finished)"
            } else {
                ""
            }
        ));
    }
    Ok(0)
}
