//! The `switchboard` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = switchboard_server::cli::Cli::parse();
    switchboard_server::cli::run(cli)
}
