//! Shared helpers for the integration tests; test modules import from here
//! only, never from each other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod browser;
mod command;
mod crash;
mod fullfs;
mod http;
mod meanwhile;
mod mpi;
mod peer;
mod prom;
mod promserver;
mod proxy;

pub use browser::{attribute, first_column, target_file, Browser};
pub use command::{cmd, tool, Run, Running, TestCommand};
pub use crash::{counter_pusher, journal_segments, page_values, saved_value};
pub use fullfs::FullFs;
pub use http::{http_get, http_raw};
pub use meanwhile::{push_and_scrape_meanwhile, Meanwhile};
pub(crate) use mpi::mpi_test;
pub use mpi::{serial, Mpi, MPICH, OPENMPI};
pub use peer::{identity, RawPeer};
pub use prom::{deploy, generate_config, promtool, rules_file, FAMILIES};
pub use promserver::{number, Prometheus};
pub use proxy::Proxy;

/// A binary of the workspace, from the target directory of this test run.
pub fn bin(name: &str) -> PathBuf {
    // This test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// `tests/c/<name>.c`.
pub fn c_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c").join(format!("{name}.c"))
}

/// Compiles `tests/c/NAME.c` into `dir` (statically when asked, so the
/// dynamic loader's own reads do not blur byte counts).
pub fn compile(dir: &TempDir, name: &str, statically: bool) -> PathBuf {
    let out = dir.join(name);
    let cc = cmd("cc").args(["-O2", "-pthread", "-o"]).arg(&out).arg(c_source(name));
    let cc = if statically { cc.arg("-static") } else { cc };
    cc.run().assert_success();
    out
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tau-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines in a file (0 if it does not exist yet).
pub fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}

/// Bytes as text, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
