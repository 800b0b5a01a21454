//! Finding a program the way `execvp` does: the one `PATH` lookup of every
//! tool.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a candidate must be for [`find_program`] to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MustBe {
    /// A regular file, enough to read it (its ELF header, say).
    File,
    /// A regular file with an execute bit, as `execve` wants.
    Executable,
}

impl MustBe {
    fn accepts(self, path: &Path) -> bool {
        path.metadata().is_ok_and(|m| m.is_file() && (self == MustBe::File || m.permissions().mode() & 0o111 != 0))
    }
}

/// Finds `program` like `execvp`: a name holding a `/` is itself the path,
/// any other is looked up in the directories of `PATH`, the first candidate
/// that is what `must_be` asks winning. Where `PATH` is unset the
/// directories of `path_if_unset` are searched (none if it is `None`).
pub fn find_program(program: &OsStr, must_be: MustBe, path_if_unset: Option<&str>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH");
    search(program, must_be, path.as_deref().or(path_if_unset.map(OsStr::new)))
}

/// [`find_program`] with the value of `PATH` given.
fn search(program: &OsStr, must_be: MustBe, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        let program = Path::new(program);
        return must_be.accepts(program).then(|| program.to_owned());
    }
    path.into_iter().flat_map(std::env::split_paths).map(|d| d.join(program)).find(|p| must_be.accepts(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_resolved_like_execvp() {
        let find = |p: &str| find_program(OsStr::new(p), MustBe::Executable, None);
        assert_eq!(find("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        let sh = find("sh").expect("sh on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find("/etc/passwd"), None, "not executable");
        assert_eq!(find("/"), None, "a directory");
        assert_eq!(find("no-such-program-anywhere"), None);
    }

    #[test]
    fn a_file_need_not_be_executable_and_the_first_directory_wins() {
        let path = OsStr::new("/nonexistent-dir:/etc:/usr/bin:/bin");
        assert_eq!(search(OsStr::new("passwd"), MustBe::File, Some(path)), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(search(OsStr::new("/etc/passwd"), MustBe::File, None), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(search(OsStr::new("/etc"), MustBe::File, None), None, "a directory");
        let sh = search(OsStr::new("sh"), MustBe::Executable, Some(path)).expect("sh in /usr/bin or /bin");
        assert!(sh == Path::new("/usr/bin/sh") || sh == Path::new("/bin/sh"), "{}", sh.display());
    }

    #[test]
    fn no_path_finds_only_names_with_a_slash() {
        assert_eq!(search(OsStr::new("sh"), MustBe::Executable, None), None);
        assert_eq!(search(OsStr::new("/bin/sh"), MustBe::Executable, None), Some(PathBuf::from("/bin/sh")));
    }
}
