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
    // Made in a folder of their own beside the pages, then each renamed into
    // place: a page that is a symlink is replaced, never written through,
    // and a run stopped half-way leaves no half-written page.
    let staging = dir.join(format!(".pathfinder-db-man.{}", std::process::id()));
    std::fs::create_dir(&staging)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))?;
    let placed = clap_mangen::generate_to(cmd, &staging)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let mut written = 0;
            for entry in std::fs::read_dir(&staging)? {
                let entry = entry?;
                std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
                written += 1;
            }
            Ok(written)
        });
    let _ = std::fs::remove_dir_all(&staging);
    let written = placed?;
    println!("wrote {written} man page(s) to {}", dir.display());
    Ok(0)
}
