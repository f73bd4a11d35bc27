use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also load the reference catalogs (skills, career paths) shipped with pathfinder-db
    #[arg(long)]
    pub with_reference_data: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let db = crate::db::Database::open(&ctx.config)?;
    let renderer = ctx.renderer(db.dialect())?;
    let mut session = db.connect()?;
    let applied = crate::migrate::init_system(session.system(), &renderer)?;
    let version = renderer.latest_version(crate::schema::render::Scope::System);
    let loaded = if args.with_reference_data {
        Some(crate::schema::reference::load(session.system())?)
    } else {
        None
    };
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "database": db.display_url(),
            "applied_versions": applied.versions,
            "system_version": version,
            "reference_data": loaded,
        }));
    } else if applied.versions.is_empty() {
        ctx.say(format!(
            "system schema in {} is up to date (version {version})",
            db.display_url()
        ));
    } else {
        ctx.say(format!(
            "system schema in {} created/upgraded to version {version} (applied {:?})",
            db.display_url(),
            applied.versions
        ));
    }
    if let Some(loaded) = loaded {
        if loaded.skills + loaded.career_paths == 0 {
            ctx.say("reference data is already loaded: nothing added");
        } else {
            ctx.say(format!(
                "reference data: added {} skills and {} career paths",
                loaded.skills, loaded.career_paths
            ));
        }
    }
    Ok(0)
}
