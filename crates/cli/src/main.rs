//! `forecastctl`: parses the command line and runs it (see the library).

use clap::Parser;

fn main() -> std::process::ExitCode {
    forecastctl::run(forecastctl::Cli::parse())
}
