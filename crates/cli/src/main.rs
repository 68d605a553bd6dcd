//! `forecastctl`: parses the command line and runs it (see the library).

use clap::Parser;

/// jemalloc for every allocation of the process, Rust's and librdkafka's
/// (its `malloc` replaces glibc's): librdkafka allocates each message on
/// the service's thread and frees it on its delivery-report thread, and
/// glibc's arena lock made the validator's main thread sleep on half of
/// its context switches; the services also free small strings per record
/// (docs/performance.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    forecastctl::run(forecastctl::Cli::parse())
}
