//! The embedded default broker: tansu (a Kafka-protocol broker written in
//! Rust) built from crates.io with `deploy/tansu.patch` by
//! `scripts/install-tansu`, once, into a cache folder; started as a child
//! process on loopback and stopped when dropped. `forecastctl up`, the
//! benchmark (`forecast-bench`) and the tests' harness all start it here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The tansu release this project runs, with `deploy/tansu.patch`.
pub const TANSU_VERSION: &str = "0.6.0";

/// Where the broker is built and kept unless `--cache-dir` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/forecast";

/// The script that installs the broker (once, into the cache folder) and
/// prints its path: the one install that `up`, the tests and the benchmark
/// share. Found in the checkout this crate was built from.
const INSTALL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/install-tansu");

/// The tansu binary: `explicit`, or the build of `scripts/install-tansu`
/// (tansu 0.6.0 with `deploy/tansu.patch`), installed into `cache_dir` the
/// first time with cargo's progress on standard error, and found there after.
pub fn tansu_path(explicit: Option<&Path>, cache_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.exists(), "--tansu {} does not exist", p.display());
        return Ok(p.to_path_buf());
    }
    let script = Path::new(INSTALL_SCRIPT);
    anyhow::ensure!(
        script.exists(),
        "the broker's install script {INSTALL_SCRIPT} is not here (this binary was built from another \
         checkout); run scripts/install-tansu of a checkout and pass its output with --tansu PATH"
    );
    eprintln!(
        "broker: tansu {TANSU_VERSION} with deploy/tansu.patch, from {} (built there the first time, \
         10 to 15 minutes on 2 cores)",
        cache_dir.display()
    );
    let out = std::process::Command::new(script)
        .env("FORECAST_CACHE_DIR", cache_dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {INSTALL_SCRIPT}: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "installing the broker failed ({}); see cargo's output above, or pass a tansu binary with --tansu PATH",
        out.status
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    anyhow::ensure!(
        path.exists(),
        "{INSTALL_SCRIPT} printed {}, which does not exist",
        path.display()
    );
    Ok(path)
}

/// A tansu broker on 127.0.0.1 with in-memory storage, stopped when dropped.
#[derive(Debug)]
pub struct Tansu {
    child: std::process::Child,
    /// `127.0.0.1:port`, for `--brokers`.
    pub brokers: String,
}

impl Tansu {
    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` on `port` with in-memory storage and waits (30 s at
    /// most) until it accepts connections. Its output goes to `log`, or
    /// nowhere.
    pub fn start(binary: &Path, port: u16, log: Option<&Path>) -> anyhow::Result<Tansu> {
        Tansu::start_with(binary, port, log, "memory://tansu/", &[])
    }

    /// [`Tansu::start`] with the storage URL `storage` and `extra` arguments
    /// of `tansu broker` (`--authentication`, `--scram-credentials FILE`).
    pub fn start_with(
        binary: &Path,
        port: u16,
        log: Option<&Path>,
        storage: &str,
        extra: &[&str],
    ) -> anyhow::Result<Tansu> {
        let brokers = format!("127.0.0.1:{port}");
        let url = format!("tcp://{brokers}");
        let (out, err) = match log {
            Some(path) => {
                let f = std::fs::File::create(path)?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = std::process::Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .args(extra)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        let mut tansu = Tansu { child, brokers };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&tansu.brokers).is_err() {
            if let Some(status) = tansu.child.try_wait()? {
                anyhow::bail!(
                    "the broker exited at start ({status}); is port {port} taken? (--port)"
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker did not listen on {} within 30 s",
                tansu.brokers
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(tansu)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
