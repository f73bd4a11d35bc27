use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user whose member database to print
    pub user: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let user = super::parse_usernames(ctx, std::slice::from_ref(&args.user))?.remove(0);
    let (db, _) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let place = crate::fleet::placement::locate(&mut session, user.as_str())?;
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&place)?);
    } else {
        ctx.say(format!(
            "{} is on member {} ({}), tenant key {}, {}",
            place.username, place.database, place.url, place.tenant_key, place.status
        ));
    }
    Ok(0)
}
