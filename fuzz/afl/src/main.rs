//! `forecast-afl TARGET`: AFL++'s harness of the fuzz target `TARGET` (see
//! `forecast_fuzz::TARGETS`). Run by scripts/fuzz.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = forecast_fuzz::target(&name) else {
        let names: Vec<&str> = forecast_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: forecast-afl TARGET, one of {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
