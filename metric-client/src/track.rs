//! `-t` / `-T`: polls the proxy at a fixed rate and writes what changed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{GetResult, QueryClient};
use protocol::ValueInfo;

use crate::output::{self, Format};
use crate::Failure;

/// Tracks until SIGINT or SIGTERM, then closes the output so that it stays
/// a valid document.
pub(crate) fn run(
    mut query: QueryClient,
    names: Option<Vec<String>>,
    job: Option<&str>,
    freq: f64,
    format: Format,
    path: Option<&Path>,
) -> Result<(), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    // The handler also writes to this socket pair, so a wait for the next
    // poll ends at once, however long the period.
    let (wake, wake_writer) = UnixStream::pair().map_err(|e| Failure::Io("cannot install signal handler".into(), e))?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .and_then(|_| wake_writer.try_clone())
            .and_then(|w| signal_hook::low_level::pipe::register(sig, w))
            .map_err(|e| Failure::Io("cannot install signal handler".into(), e))?;
    }
    let (sink, shown): (Box<dyn Write>, String) = match path {
        Some(p) => {
            let f = File::create(p).map_err(|e| Failure::Io(format!("cannot create {}", p.display()), e))?;
            (Box::new(f), p.display().to_string())
        }
        None => (Box::new(std::io::stdout()), "stdout".to_owned()),
    };
    let message = format!("Logging in {shown} interrupt with CTRL + C when done...");
    if path.is_some() {
        println!("{message}");
    } else {
        eprintln!("{message}");
    }
    let mut out = Writer { sink: BufWriter::new(sink), format, snapshots: 0 };
    out.begin()?;

    if let Some(names) = &names {
        if let GetResult::Unknown(missing) = query.get(names)? {
            eprintln!("tau_metric_client: not in the proxy yet, tracked once they appear: {}", missing.join(", "));
        }
    }
    let period = Duration::from_secs_f64(1.0 / freq);
    let mut generation = 0;
    let mut next = Instant::now();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let (g, changed) = match query.changes(generation) {
            Ok(c) => c,
            Err(e) => break Err(Failure::Proxy(e)),
        };
        let first = generation == 0;
        generation = g;
        let keep: Vec<ValueInfo> = changed
            .into_iter()
            .filter(|v| match &names {
                Some(names) => names.contains(&v.name),
                // All non-null series; once tracked, a return to 0 is a change.
                None => (!first || v.value != 0.0) && job.is_none_or(|id| crate::jobs::is_of_job(&v.name, id)),
            })
            .collect();
        if !keep.is_empty() {
            if let Err(e) = out.snapshot(&keep) {
                break Err(e);
            }
        }
        next += period;
        let now = Instant::now();
        if next > now {
            wait(&wake, next - now);
        } else {
            // Fell behind (a slow proxy): skip the missed ticks.
            next = now;
        }
    };
    let end = out.end();
    result.and(end)
}

/// Sleeps for `period` or until a signal handler writes to `wake`.
fn wait(mut wake: &UnixStream, period: Duration) {
    let started = Instant::now();
    if wake.set_read_timeout(Some(period.max(Duration::from_micros(1)))).is_err() {
        std::thread::sleep(period);
        return;
    }
    let mut byte = [0u8; 1];
    // Woken by a signal (a byte), or the period passed (an error); a read
    // interrupted early waits for the rest.
    while wake.read(&mut byte).is_err() {
        match period.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => drop(wake.set_read_timeout(Some(left))),
            _ => return,
        }
    }
}

struct Writer {
    sink: BufWriter<Box<dyn Write>>,
    format: Format,
    snapshots: usize,
}

impl Writer {
    fn io(e: std::io::Error) -> Failure {
        Failure::Io("cannot write the tracking output".into(), e)
    }

    fn begin(&mut self) -> Result<(), Failure> {
        if self.format == Format::Json {
            self.sink.write_all(b"[\n").map_err(Self::io)?;
        }
        self.sink.flush().map_err(Self::io)
    }

    /// Writes one snapshot and flushes, so the file is current while
    /// tracking and only the closing bracket is missing if we are killed.
    fn snapshot(&mut self, values: &[ValueInfo]) -> Result<(), Failure> {
        let text = match self.format {
            Format::Json => {
                let sep = if self.snapshots > 0 { ",\n" } else { "" };
                format!("{sep}{}", output::track_snapshot_json(values))
            }
            Format::Yaml => {
                let mut s = String::from("-\n");
                for v in values {
                    s.push_str(&format!(
                        "  - name: {}\n    ts: {}\n    value: {}\n",
                        serde_json::Value::from(v.name.as_str()),
                        output::ts_text(v.ts),
                        output::yaml_number(v)
                    ));
                }
                s
            }
            Format::Txt | Format::Md => {
                let mut s = String::new();
                for v in values {
                    s.push_str(&format!("{} {} {}\n", v.name, output::ts_text(v.ts), output::number_text(v)));
                }
                s
            }
        };
        self.snapshots += 1;
        self.sink.write_all(text.as_bytes()).map_err(Self::io)?;
        self.sink.flush().map_err(Self::io)
    }

    fn end(&mut self) -> Result<(), Failure> {
        match self.format {
            Format::Json if self.snapshots > 0 => self.sink.write_all(b"\n]\n"),
            Format::Json => self.sink.write_all(b"]\n"),
            Format::Yaml if self.snapshots == 0 => self.sink.write_all(b"[]\n"),
            _ => Ok(()),
        }
        .and_then(|_| self.sink.flush())
        .map_err(Self::io)
    }
}
