//! Argument parsing shared by every tool: a bad flag is one clear line.

/// Parses the command line of `tool`. Help and version go to stdout with
/// status 0; a usage error prints one line, `TOOL: error: ... (see TOOL --help)`,
/// and exits with status 2.
#[cfg(feature = "cli")]
pub fn parse_args<T: clap::Parser>(tool: &str) -> T {
    use clap::error::ErrorKind;
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => usage_error(tool, &e.to_string()),
    }
}

/// Prints `TOOL: error: MESSAGE (see TOOL --help)` and exits with status 2.
pub fn usage_error(tool: &str, message: &str) -> ! {
    eprintln!("{tool}: error: {} (see {tool} --help)", one_line(message));
    std::process::exit(2)
}

/// Clap's message without its usage and tips, on one line: the lines that
/// follow the first (for example the missing arguments) are kept.
fn one_line(message: &str) -> String {
    let body = message.split("\n\n").next().unwrap_or(message);
    let body = body.trim().trim_start_matches("error: ");
    let parts: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match parts.as_slice() {
        [] => "invalid arguments".to_owned(),
        [first, rest @ ..] if first.ends_with(':') => format!("{first} {}", rest.join(", ")),
        parts => parts.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(
            one_line("error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: x [OPTIONS]\n\nFor more information, try '--help'.\n"),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(
            one_line("error: the following required arguments were not provided:\n  --prometheus-config <NODES>\n\nUsage: x\n"),
            "the following required arguments were not provided: --prometheus-config <NODES>"
        );
        assert_eq!(one_line(""), "invalid arguments");
    }
}
