fn main() -> std::process::ExitCode {
    // Like other command-line tools, end quietly when stdout is a closed pipe
    // (`pathfinder-db render alice | head`) instead of panicking.
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::ExitCode::from(pathfinder_db::cli::run())
}
