fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(pathfinder_db::cli::run())
}
