//! Every fuzz target over its committed seeds (`fuzz/seeds/TARGET/`) and
//! 300 deterministic mutations of each: what CI runs of the fuzzing on every
//! run (AFL++ itself runs with `scripts/fuzz`). A seed or a mutation that
//! once crashed a target is kept among the seeds, so this is also the
//! regression test of each fix.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four of: flip a bit, set a byte to a boundary value, delete,
/// duplicate or truncate a range, or splice in bytes of another seed.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'\\', b'9'][rng.below(8)];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(16)) + 1;
                v.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(32)) + 1;
                let piece = v[i..i + n].to_vec();
                let at = rng.below(len);
                v.splice(at..at, piece);
            }
            4 => v.truncate(rng.below(len + 1)),
            _ if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = rng.below((other.len() - i).min(64)) + 1;
                let at = rng.below(len + 1);
                v.splice(at..at, other[i..i + n].iter().copied());
            }
            _ => {}
        }
    }
    v
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for (name, target) in forecast_fuzz::TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut runs = 0;
        for (i, (path, seed)) in seeds.iter().enumerate() {
            let run = |input: &[u8]| {
                if let Err(panic) = std::panic::catch_unwind(|| target(input)) {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panic!(
                        "{name} crashed on {} (or a mutation of it): {message}\ninput: {:?}",
                        path.display(),
                        String::from_utf8_lossy(input)
                    );
                }
            };
            run(seed);
            let other = &seeds[(i + 1) % seeds.len()].1;
            for _ in 0..300 {
                run(&mutate(&mut rng, seed, other));
                runs += 1;
            }
        }
        eprintln!("{name}: {} seeds, {runs} mutations", seeds.len());
    }
}

#[test]
fn every_target_has_seeds_and_a_name_the_afl_harness_knows() {
    for (name, _) in forecast_fuzz::TARGETS {
        assert!(forecast_fuzz::target(name).is_some());
        assert!(!seeds(name).is_empty(), "{name}");
    }
    assert!(forecast_fuzz::target("nothing").is_none());
}
