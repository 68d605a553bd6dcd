//! Runs a fuzz target on files, to reproduce what AFL++ found with a
//! backtrace: `cargo run -p forecast-fuzz --example run -- TARGET FILE...`.

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(target) = forecast_fuzz::target(&name) else {
        eprintln!("usage: run TARGET FILE...");
        std::process::exit(2);
    };
    for file in args {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        eprintln!("{file}");
        target(&data);
    }
}
