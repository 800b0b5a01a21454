//! Argument parsing shared by every tool: a bad flag is one clear line.

use clap::error::ErrorKind;
use clap::Parser;

/// Parses the command line of `tool`. Help and version go to stdout with
/// status 0; a usage error prints one line, `TOOL: error: ... (see --help)`,
/// and exits with status 2.
pub fn parse_args<T: Parser>(tool: &str) -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => usage_error(tool, &e.to_string()),
    }
}

/// Prints `TOOL: error: MESSAGE (see --help)` and exits with status 2.
pub fn usage_error(tool: &str, message: &str) -> ! {
    let first = message.lines().next().unwrap_or("invalid arguments");
    let first = first.trim_start_matches("error: ");
    eprintln!("{tool}: error: {first} (see {tool} --help)");
    std::process::exit(2)
}
