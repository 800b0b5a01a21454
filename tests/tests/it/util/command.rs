//! Running commands under test: [`TestCommand`] builds one, [`Run`] holds
//! what it did, [`Running`] is one still running. Every failed check on a
//! [`Run`] panics with the whole story: the command line, the exit status,
//! stdout, stderr and the log of each daemon the test has running.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{bin, text, wait_for};

/// A command to run: `program`, found on `PATH` unless it is a path.
pub fn cmd(program: impl AsRef<OsStr>) -> TestCommand {
    let program = program.as_ref();
    TestCommand { cmd: Command::new(program), env: Vec::new(), argv: vec![quote(program)], input: None, hint: None }
}

/// A command running one of this workspace's binaries (see [`bin`]).
pub fn tool(name: &str) -> TestCommand {
    cmd(bin(name))
}

/// A [`Command`] that remembers how it was built, to show it when a check fails.
pub struct TestCommand {
    cmd: Command,
    /// The environment changes, as `env` takes them.
    env: Vec<String>,
    /// The program and its arguments, quoted for a shell.
    argv: Vec<String>,
    /// Written to the command's standard input (else it reads nothing).
    input: Option<Vec<u8>>,
    /// Where the program comes from, said if it cannot be started.
    hint: Option<&'static str>,
}

impl TestCommand {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> TestCommand {
        self.argv.push(quote(arg.as_ref()));
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, A>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestCommand {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.env.push(format!("{}={}", quote(key), quote(value)));
        self.cmd.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> TestCommand
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> TestCommand {
        let key = key.as_ref();
        self.env.push(format!("-u {}", quote(key)));
        self.cmd.env_remove(key);
        self
    }

    /// Bytes for the command's standard input, written as it runs.
    pub fn input(mut self, bytes: impl Into<Vec<u8>>) -> TestCommand {
        self.input = Some(bytes.into());
        self
    }

    /// Says where the program comes from, should it be missing.
    pub fn hint(mut self, hint: &'static str) -> TestCommand {
        self.hint = Some(hint);
        self
    }

    /// The command as one shell line.
    pub fn line(&self) -> String {
        if self.env.is_empty() {
            return self.argv.join(" ");
        }
        // `env` takes its `-u NAME` options before the assignments.
        let (unset, set): (Vec<&String>, Vec<&String>) = self.env.iter().partition(|w| w.starts_with("-u "));
        let words: Vec<&str> = unset.into_iter().chain(set).map(String::as_str).collect();
        format!("env {} {}", words.join(" "), self.argv.join(" "))
    }

    /// Starts the command: stdin gets the [`input`](Self::input) or
    /// nothing; stdout and stderr are captured.
    pub fn spawn(mut self) -> Running {
        let line = self.line();
        self.cmd
            .stdin(if self.input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.cmd.spawn().unwrap_or_else(|e| match self.hint {
            Some(hint) => panic!("cannot start `{line}`: {e}: {hint}"),
            None => panic!("cannot start `{line}`: {e}"),
        });
        if let (Some(bytes), Some(mut stdin)) = (self.input.take(), child.stdin.take()) {
            // A thread, so that a command writing before it reads never deadlocks.
            std::thread::spawn(move || stdin.write_all(&bytes));
        }
        Running { child, line, started, stdout: None, seen: Vec::new() }
    }

    /// Runs the command to its end.
    pub fn run(self) -> Run {
        self.spawn().wait()
    }
}

/// `s` as one shell word.
fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_-+./:,@%=".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command started by [`TestCommand::spawn`].
pub struct Running {
    child: Child,
    line: String,
    started: Instant,
    /// Standard output, once the test has started reading it line by line.
    stdout: Option<BufReader<ChildStdout>>,
    /// What the test has read of standard output so far.
    seen: Vec<u8>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the command.
    pub fn signal(&self, sig: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("cannot send {sig} to `{}`: {e}", self.line));
    }

    /// The next line of standard output, with its newline (empty at the end).
    pub fn read_line(&mut self) -> String {
        if self.stdout.is_none() {
            self.stdout = self.child.stdout.take().map(BufReader::new);
        }
        let mut line = String::new();
        let reader = self.stdout.as_mut().expect("stdout is captured");
        reader.read_line(&mut line).unwrap_or_else(|e| panic!("reading stdout of `{}`: {e}", self.line));
        self.seen.extend_from_slice(line.as_bytes());
        line
    }

    /// True once the command has ended; [`wait`](Self::wait) still collects it.
    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.line)).is_some()
    }

    /// Waits for the command to end and collects what it printed.
    pub fn wait(mut self) -> Run {
        let line = std::mem::take(&mut self.line);
        let stderr = self.child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = e.read_to_end(&mut v);
                v
            })
        });
        let mut stdout = std::mem::take(&mut self.seen);
        match (self.stdout.take(), self.child.stdout.take()) {
            (Some(mut r), _) => drop(r.read_to_end(&mut stdout)),
            (None, Some(mut o)) => drop(o.read_to_end(&mut stdout)),
            (None, None) => {}
        }
        let status = self.child.wait().unwrap_or_else(|e| panic!("waiting for `{line}`: {e}"));
        let took = self.started.elapsed();
        let stderr = stderr.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        Run { line, output: Output { status, stdout, stderr }, took }
    }

    /// A hang detector: waits at most `limit` for the command to end;
    /// past it, kills the command and fails with what it printed.
    pub fn finish_within(mut self, limit: Duration) -> Run {
        let started = self.started;
        let ended = wait_for(limit, || self.has_ended().then_some(Instant::now()));
        if ended.is_none() {
            let _ = self.child.kill();
        }
        let mut run = self.wait();
        match ended {
            Some(at) => {
                // Until it ended, not until its output was collected.
                run.took = at - started;
                run
            }
            None => run.fail(format_args!("did not end within {limit:?} (killed)")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed with the command still running leaves nothing behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a command did: its status and output, and how long it ran.
pub struct Run {
    line: String,
    output: Output,
    took: Duration,
}

impl Run {
    pub fn status(&self) -> ExitStatus {
        self.output.status
    }

    /// The exit code; `None` when a signal ended the command.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        text(&self.output.stdout)
    }

    pub fn stderr(&self) -> String {
        text(&self.output.stderr)
    }

    pub fn stdout_bytes(&self) -> &[u8] {
        &self.output.stdout
    }

    /// Stdout, then stderr.
    pub fn combined(&self) -> String {
        self.stdout() + &self.stderr()
    }

    /// From the start to the end of the command.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// Fails unless the command exited with status 0.
    pub fn assert_success(&self) -> &Run {
        if !self.output.status.success() {
            self.fail("expected success");
        }
        self
    }

    /// Fails if the command exited with status 0.
    pub fn assert_failure(&self) -> &Run {
        if self.output.status.success() {
            self.fail("expected a failure");
        }
        self
    }

    /// Fails unless the command exited with `code`.
    pub fn assert_exit(&self, code: i32) -> &Run {
        if self.code() != Some(code) {
            self.fail(format_args!("expected exit status {code}"));
        }
        self
    }

    /// Fails unless the signal `sig` ended the command.
    pub fn assert_killed_by(&self, sig: Signal) -> &Run {
        if self.output.status.signal() != Some(sig as i32) {
            self.fail(format_args!("expected to be killed by {sig}"));
        }
        self
    }

    /// Fails unless stdout is exactly `want`.
    pub fn assert_stdout(&self, want: &str) -> &Run {
        let got = self.stdout();
        if got != want {
            self.fail(format_args!("stdout differs\n  expected: {want:?}\n       got: {got:?}"));
        }
        self
    }

    /// Fails unless stderr is exactly `want`.
    pub fn assert_stderr(&self, want: &str) -> &Run {
        let got = self.stderr();
        if got != want {
            self.fail(format_args!("stderr differs\n  expected: {want:?}\n       got: {got:?}"));
        }
        self
    }

    /// Panics with `what` and everything about the command.
    pub fn fail(&self, what: impl fmt::Display) -> ! {
        panic!("`{}`: {what}\n{self}", self.line)
    }
}

/// The report of a failed check: command, status, output, daemon logs.
impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "===== command: {}", self.line)?;
        writeln!(f, "===== status: {} after {:.3} s", self.output.status, self.took.as_secs_f64())?;
        section(f, "stdout", &self.stdout())?;
        section(f, "stderr", &self.stderr())?;
        for log in daemon_logs() {
            let all = std::fs::read_to_string(&log).unwrap_or_else(|e| format!("(cannot read it: {e})\n"));
            let lines: Vec<&str> = all.lines().collect();
            let from = lines.len().saturating_sub(LOG_LINES);
            let title = match from {
                0 => format!("daemon log {}", log.display()),
                n => format!("daemon log {}, last {LOG_LINES} lines of {}", log.display(), n + LOG_LINES),
            };
            section(f, &title, &lines[from..].iter().map(|l| format!("{l}\n")).collect::<String>())?;
        }
        write!(f, "=====")
    }
}

/// How much of a daemon's log a report shows.
const LOG_LINES: usize = 200;

fn section(f: &mut fmt::Formatter<'_>, title: &str, body: &str) -> fmt::Result {
    if body.is_empty() {
        return writeln!(f, "===== {title}: (empty)");
    }
    writeln!(f, "===== {title}:")?;
    f.write_str(body)?;
    if !body.ends_with('\n') {
        writeln!(f, "\n(no newline at the end)")?;
    }
    Ok(())
}

thread_local! {
    /// The logs of the daemons the current test has running, by daemon.
    static DAEMON_LOGS: RefCell<Vec<(u64, PathBuf)>> = const { RefCell::new(Vec::new()) };
}

/// Shows the log at `path` in the reports of this thread's commands,
/// until [`detach_daemon_log`] with the returned key.
pub(super) fn attach_daemon_log(path: &Path) -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    DAEMON_LOGS.with(|l| l.borrow_mut().push((key, path.to_owned())));
    key
}

pub(super) fn detach_daemon_log(key: u64) {
    // During a thread's exit the list may already be gone: nothing to detach then.
    let _ = DAEMON_LOGS.try_with(|l| l.borrow_mut().retain(|(k, _)| *k != key));
}

fn daemon_logs() -> Vec<PathBuf> {
    DAEMON_LOGS.with(|l| l.borrow().iter().map(|(_, p)| p.clone()).collect())
}
