//! `/proc/PID/stat`: a process's state and start time.

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, ..., `Z` for a zombie (it has exited).
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 22: start time in clock ticks since boot, which tells a process
    /// from a later one that reuses its pid.
    pub start_time: u64,
}

/// The command name of a process (`/proc/PID/comm`, at most 15 bytes),
/// without its newline.
pub fn comm(pid: u32) -> Option<String> {
    let mut name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    name.truncate(name.trim_end_matches('\n').len());
    Some(name)
}

/// Reads `/proc/PID/stat`; `None` when it cannot be read (no such process,
/// or hidden by the mount options of `/proc`).
pub fn stat(pid: u32) -> Option<Stat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether some thread of process `pid` has not exited: its thread-group
/// leader may be a zombie (it called `pthread_exit`) while other threads
/// run, and the process is then alive. `None` when `/proc/PID/task`
/// cannot be read.
pub fn has_live_thread(pid: u32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let live = tasks.flatten().any(|t| {
        let path = t.path().join("stat");
        let stat = std::fs::read_to_string(path).ok().and_then(|s| parse(&s));
        stat.is_some_and(|s| s.state != 'Z' && s.state != 'X')
    });
    Some(live)
}

/// The fields of one `/proc/PID/stat` line.
fn parse(stat: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(Stat { state, ppid, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_from_proc() {
        let s = stat(std::process::id()).expect("own status");
        assert!(s.start_time > 0);
        assert_ne!(s.state, 'Z');
        assert_eq!(s.ppid, std::os::unix::process::parent_id());
        assert_eq!(stat(u32::MAX), None);
        assert_eq!(has_live_thread(std::process::id()), Some(true));
        assert_eq!(has_live_thread(u32::MAX), None);
    }

    #[test]
    fn the_command_name_is_read_from_proc() {
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_str().unwrap();
        assert_eq!(comm(std::process::id()).as_deref(), Some(&name[..name.len().min(15)]));
        assert_eq!(comm(u32::MAX), None);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(parse(line), Some(Stat { state: 'S', ppid: 1, start_time: 12345 }));
        assert_eq!(parse("42 (zombie) Z"), None, "truncated before field 22");
        assert_eq!(parse("42 (x)"), None, "nothing after the name");
        assert_eq!(parse("no name at all"), None);
    }
}
