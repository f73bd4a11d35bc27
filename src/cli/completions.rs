//! Shell completions (clap_complete) and the man pages (clap_mangen), both
//! generated from the command-line definition, so they never drift from it.

use std::path::PathBuf;

use clap::CommandFactory;

use super::Cli;
use crate::error::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pathfinder-db", &mut out);
    super::out(&String::from_utf8_lossy(&out));
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write pathfinder-db.1 and one page per command (pathfinder-db-<command>.1)
    /// into this folder instead of printing the main page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    let cmd = Cli::command();
    let Some(dir) = &args.dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        super::out(&String::from_utf8_lossy(&out));
        return Ok(0);
    };
    if !dir.is_dir() {
        return Err(UsageError::new(format!(
            "{} is not a folder: create it first",
            dir.display()
        ))
        .into());
    }
    let mut written = 0;
    clap_mangen::generate_to(cmd, dir)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "1") {
            written += 1;
        }
    }
    println!("wrote {written} man page(s) to {}", dir.display());
    Ok(0)
}
