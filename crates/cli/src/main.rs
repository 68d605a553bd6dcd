//! `forecastctl`: parses the command line and runs it (see the library).

use clap::Parser;

/// mimalloc instead of glibc's allocator: the services allocate and free
/// small strings per record, and glibc malloc/free were a quarter of the
/// validator's CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    forecastctl::run(forecastctl::Cli::parse())
}
