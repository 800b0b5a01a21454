//! A real browser for the live page: Debian's `chromium`, headless, each
//! run with a fresh profile. The page polls every second; a run lets it
//! live for a budget of *virtual* time (`--virtual-time-budget`), which
//! Chromium advances as fast as the page's work allows and holds while a
//! request is in flight, so a budget of 10 s is ten polls of the real
//! daemon in about a second. Then it prints the DOM the page built
//! (`--dump-dom`) or saves a screenshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{cmd, TempDir, TestCommand};

/// How Chromium runs here: headless, as root in a container (no
/// sandbox), without a GPU, and without talking to anything but the page.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A run never takes this long, even on a loaded machine.
const RUN_LIMIT: Duration = Duration::from_secs(120);

pub struct Browser {
    dir: TempDir,
    runs: AtomicUsize,
}

impl Browser {
    pub fn new() -> Browser {
        Browser { dir: TempDir::new("chromium"), runs: AtomicUsize::new(0) }
    }

    fn command(&self, budget: Duration) -> TestCommand {
        // A fresh profile each run: nothing cached from another one.
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        cmd("chromium")
            .hint("Debian's chromium is missing: `cargo xtask test` installs it")
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", self.dir.join(&format!("profile-{n}")).display()))
            .arg("--window-size=1280,1000")
            .arg(format!("--virtual-time-budget={}", budget.as_millis()))
    }

    /// The DOM of `url` after the page ran for `budget` of virtual time.
    pub fn dom(&self, url: &str, budget: Duration) -> String {
        let run = self.command(budget).arg("--dump-dom").arg(url).spawn().finish_within(RUN_LIMIT);
        run.assert_success();
        if !run.stdout().contains("</html>") {
            run.fail("printed no document");
        }
        run.stdout()
    }

    /// Saves a PNG screenshot of `url` after `budget` of virtual time.
    pub fn screenshot(&self, url: &str, budget: Duration, png: &Path) {
        let _ = std::fs::remove_file(png);
        let run = self.command(budget).arg(format!("--screenshot={}", png.display())).arg(url).spawn();
        let run = run.finish_within(RUN_LIMIT);
        run.assert_success();
        let bytes = std::fs::read(png).unwrap_or_default();
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            run.fail(format_args!("wrote no PNG to {}", png.display()));
        }
    }
}

/// `target/<name>`, beside the build profiles, for files a person looks at
/// after the tests (created if missing).
pub fn target_file(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).expect("the target directory");
    let path = target.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the directory under target/");
    }
    path
}

/// The value of attribute `attr` of the element with id `id` in `dom`.
pub fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let value = tag.split(&format!(" {attr}=\"")).nth(1)?;
    Some(value[..value.find('"')?].to_owned())
}

/// The text of each cell of the first column of table `id`'s body.
pub fn first_column(dom: &str, id: &str) -> Vec<String> {
    let Some(at) = dom.find(&format!("<table id=\"{id}\"")) else { return Vec::new() };
    let table = &dom[at..at + dom[at..].find("</table>").unwrap_or(dom.len() - at)];
    let Some(body) = table.split("<tbody>").nth(1) else { return Vec::new() };
    body.split("<tr")
        .skip(1)
        .filter_map(|row| {
            let cell = row.split("<td").nth(1)?;
            let text = &cell[cell.find('>')? + 1..];
            Some(unescape(&text[..text.find("</td>")?]))
        })
        .collect()
}

/// The text of an element's inner HTML: tags left out, entities unescaped.
fn unescape(s: &str) -> String {
    let mut text = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        rest = rest[open..].find('>').map_or("", |close| &rest[open + close + 1..]);
    }
    text.push_str(rest);
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&nbsp;", " ").replace("&amp;", "&")
}
