//! `tau_metric_client --prometheus-config NODES`: from a node list to a
//! complete `prometheus.yml` scraping every node's proxy.
//!
//! NODES is a comma list (`node1,node2:9000`), a SLURM node list
//! (`node[01-04,07],gpu1`, zero padding kept) or `@FILE`, a hostfile with one
//! host per line (`@-` reads standard input). A host may carry `:PORT`; the
//! default is the proxy's port, 1337.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The port `tau_metric_proxy` listens on unless told otherwise.
pub(crate) const DEFAULT_PORT: u16 = 1337;

/// Where `cargo xtask dist` puts the recording rules, relative to the
/// installation prefix (the tools live in `PREFIX/bin`).
pub(crate) const RULES_IN_PREFIX: &str = "share/tau_metric_proxy/prometheus/tau_metric_proxy.rules.yml";

/// A node list that expands to more hosts than this is surely a typo
/// (`node[1-99999999]`), not a cluster.
const MAX_HOSTS: usize = 100_000;

/// One proxy to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    /// The value of the `node` label: the host, plus the port when it is not
    /// the default one, so that two proxies on one host stay apart.
    pub(crate) fn node(&self) -> String {
        if self.port == DEFAULT_PORT {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Builds the configuration for `nodes`; `rules` is a recording-rules file
/// to load (made absolute, as Prometheus reads relative paths from the
/// configuration file's directory).
pub(crate) fn generate(nodes: &str, rules: Option<&Path>) -> Result<String, String> {
    let targets = parse_nodes(nodes)?;
    let rules = canonical_rules(rules)?;
    Ok(render(&targets, rules.as_deref(), &shipped_rules()))
}

/// The rules file made absolute, as Prometheus reads relative paths from
/// the configuration file's directory.
pub(crate) fn canonical_rules(rules: Option<&Path>) -> Result<Option<PathBuf>, String> {
    match rules {
        Some(p) => {
            Ok(Some(std::fs::canonicalize(p).map_err(|e| format!("cannot find rules file {}: {e}", p.display()))?))
        }
        None => Ok(None),
    }
}

/// The rules file of this installation when it is there (`bin/../share/...`),
/// else where a `/usr/local` installation keeps it; only shown in a comment.
pub(crate) fn shipped_rules() -> String {
    let found = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|prefix| prefix.join(RULES_IN_PREFIX)))
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok());
    match found {
        Some(p) => p.display().to_string(),
        None => PathBuf::from("/usr/local").join(RULES_IN_PREFIX).display().to_string(),
    }
}

/// Parses NODES: `@FILE`, `@-`, or a comma / SLURM list. Duplicates are
/// dropped (MPI hostfiles repeat a host once per slot), keeping the order.
pub(crate) fn parse_nodes(spec: &str) -> Result<Vec<Target>, String> {
    let targets = match spec.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("cannot read the hostfile from standard input: {e}"))?;
            parse_hostfile(&text).map_err(|e| format!("standard input: {e}"))?
        }
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read hostfile {file}: {e}"))?;
            parse_hostfile(&text).map_err(|e| format!("{file}: {e}"))?
        }
        None => parse_list(spec)?,
    };
    if targets.is_empty() {
        return Err(format!("no node in {spec:?}"));
    }
    Ok(targets)
}

/// A hostfile: one host per line, `#` starts a comment, blank lines are
/// skipped, and only the first word counts (`node1 slots=4` in an Open MPI
/// hostfile is `node1`). A line may hold a SLURM list too.
pub(crate) fn parse_hostfile(text: &str) -> Result<Vec<Target>, String> {
    let mut all = Unique::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        if let Some(word) = line.split_whitespace().next() {
            let targets = parse_list(word).map_err(|e| format!("line {}: {e}", n + 1))?;
            all.extend(targets)?;
        }
    }
    Ok(all.out)
}

/// A comma list whose items may be SLURM host ranges, each with an optional
/// `:PORT`: `node[01-04,07],gpu1:9000`.
pub(crate) fn parse_list(list: &str) -> Result<Vec<Target>, String> {
    parse_list_with_port(list, DEFAULT_PORT)
}

/// [`parse_list`] with another default port.
pub(crate) fn parse_list_with_port(list: &str, default_port: u16) -> Result<Vec<Target>, String> {
    let mut all = Unique::default();
    for item in split_top_level(list)? {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty node name in {list:?}"));
        }
        let (hosts, port) = match item.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, parse_port(p)?),
            _ => (item, default_port),
        };
        let targets = expand(hosts)?.into_iter().map(|host| Target { host, port }).collect();
        all.extend(targets)?;
    }
    Ok(all.out)
}

/// Targets in first-seen order, without repeats.
#[derive(Default)]
struct Unique {
    out: Vec<Target>,
    seen: HashSet<Target>,
}

impl Unique {
    fn extend(&mut self, targets: Vec<Target>) -> Result<(), String> {
        for t in targets {
            if !self.seen.contains(&t) {
                if self.out.len() == MAX_HOSTS {
                    return Err(format!("more than {MAX_HOSTS} nodes"));
                }
                self.seen.insert(t.clone());
                self.out.push(t);
            }
        }
        Ok(())
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("invalid port {p:?} (1 to 65535)")),
    }
}

/// Splits on the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut start, mut open) = (Vec::new(), 0, false);
    for (i, c) in list.char_indices() {
        match c {
            '[' if open => return Err(format!("nested '[' in {list:?}")),
            '[' => open = true,
            ']' if !open => return Err(format!("']' without '[' in {list:?}")),
            ']' => open = false,
            ',' if !open => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if open {
        return Err(format!("'[' without ']' in {list:?}"));
    }
    out.push(&list[start..]);
    Ok(out)
}

/// Expands the bracket groups of one host pattern, left to right:
/// `rack[1-2]n[01-02]` gives `rack1n01 rack1n02 rack2n01 rack2n02`.
pub(crate) fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let hosts = expand_groups(pattern)?;
    hosts.iter().try_for_each(|h| check_host(h))?;
    Ok(hosts)
}

fn expand_groups(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = open + pattern[open..].find(']').ok_or_else(|| format!("'[' without ']' in {pattern:?}"))?;
    let (prefix, ranges, rest) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let tails = expand_groups(rest)?;
    let mut out = Vec::new();
    for value in range_values(ranges)? {
        for tail in &tails {
            if out.len() == MAX_HOSTS {
                return Err(format!("{pattern:?} expands to more than {MAX_HOSTS} nodes"));
            }
            out.push(format!("{prefix}{value}{tail}"));
        }
    }
    Ok(out)
}

/// `01-04,07` gives `01 02 03 04 07`: a range is as wide as its first
/// bound, so zero padding is kept (`8-10` gives `8 9 10`).
fn range_values(ranges: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in ranges.split(',') {
        let part = part.trim();
        let number = |s: &str| -> Result<u64, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid range {part:?} in [{ranges}]: expected N or N-M"));
            }
            s.parse().map_err(|_| format!("number too large in [{ranges}]"))
        };
        match part.split_once('-') {
            None => {
                number(part)?;
                out.push(part.to_owned());
            }
            Some((lo_s, hi_s)) => {
                let (lo, hi) = (number(lo_s)?, number(hi_s)?);
                if lo > hi {
                    return Err(format!("range {part:?} in [{ranges}] goes down"));
                }
                if hi - lo >= MAX_HOSTS as u64 {
                    return Err(format!("range {part:?} has more than {MAX_HOSTS} nodes"));
                }
                let width = lo_s.len();
                out.extend((lo..=hi).map(|v| format!("{v:0width$}")));
            }
        }
    }
    Ok(out)
}

/// Host names and IPv4 addresses: letters, digits, `-`, `_` and `.`, which
/// also keeps the YAML and job names free of quoting trouble.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty node name".to_owned());
    }
    match host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        Some(c) => Err(format!("invalid character {c:?} in node name {host:?}")),
        None => Ok(()),
    }
}

/// A YAML single-quoted scalar.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The whole `prometheus.yml`: scraping every second with a one-second
/// timeout, as the proxy is meant to be read at high frequency, and rules
/// evaluated at the same pace.
pub(crate) fn render(targets: &[Target], rules: Option<&Path>, shipped_rules: &str) -> String {
    let mut y = String::new();
    let nodes = if targets.len() == 1 { "node".to_owned() } else { format!("{} nodes", targets.len()) };
    y += &format!("# Prometheus configuration scraping the tau_metric_proxy of {nodes},\n");
    y += "# written by `tau_metric_client --prometheus-config`. Run it with:\n";
    y += "#   prometheus --config.file=prometheus.yml\n";
    y += "# Each proxy is its own scrape job; the `node` label names its node.\n\n";
    y += "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\n";
    y += &render_rules(rules, shipped_rules);
    y += "scrape_configs:\n";
    for t in targets {
        let node = t.node();
        y += &format!("  - job_name: {}\n", quote(&format!("tau_{node}")));
        y += "    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n";
        y += &format!("      - targets: [{}]\n", quote(&format!("{}:{}", t.host, t.port)));
        y += &format!("        labels:\n          node: {}\n", quote(&node));
    }
    y
}

/// The `rule_files` section, or where the shipped rules are in a comment.
pub(crate) fn render_rules(rules: Option<&Path>, shipped_rules: &str) -> String {
    match rules {
        Some(path) => format!(
            "# Job-wide and node-wide sums and rates of the MPI and syscall counters.\nrule_files:\n  - {}\n\n",
            quote(&path.display().to_string())
        ),
        None => format!(
            "# Job-wide and node-wide sums and rates of the MPI and syscall counters ship\n\
             # as recording rules: add --prometheus-rules FILE, or uncomment:\n\
             # rule_files:\n#   - {}\n\n",
            quote(shipped_rules)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> Vec<String> {
        parse_list(list).unwrap().into_iter().map(|t| t.node()).collect()
    }

    #[test]
    fn comma_lists_and_ports() {
        assert_eq!(hosts("a, b.example.org,10.0.0.7"), ["a", "b.example.org", "10.0.0.7"]);
        assert_eq!(
            parse_list("n1:9000,n2").unwrap(),
            [Target { host: "n1".into(), port: 9000 }, Target { host: "n2".into(), port: DEFAULT_PORT }]
        );
        // The default port is not repeated in the node label.
        assert_eq!(hosts("n1:1337,n1:1338"), ["n1", "n1:1338"]);
        // Repeats (one per MPI slot) collapse, first occurrence first.
        assert_eq!(hosts("b,a,b,a:1337"), ["b", "a"]);
    }

    #[test]
    fn slurm_ranges_keep_zero_padding() {
        assert_eq!(hosts("node[01-04,07],gpu1"), ["node01", "node02", "node03", "node04", "node07", "gpu1"]);
        assert_eq!(hosts("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(hosts("n[098-101]"), ["n098", "n099", "n100", "n101"]);
        assert_eq!(hosts("r[1-2]n[01-02]-ib"), ["r1n01-ib", "r1n02-ib", "r2n01-ib", "r2n02-ib"]);
        assert_eq!(hosts("n[5]"), ["n5"]);
        assert_eq!(hosts("node[1-2]:9000"), ["node1:9000", "node2:9000"]);
        assert_eq!(parse_list("n[1-100000]").unwrap().len(), 100_000);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let err = |l: &str| parse_list(l).unwrap_err();
        assert_eq!(err("n[1-3"), "'[' without ']' in \"n[1-3\"");
        assert_eq!(err("n1-3]"), "']' without '[' in \"n1-3]\"");
        assert_eq!(err("n[1-[2]]"), "nested '[' in \"n[1-[2]]\"");
        assert_eq!(err("n[3-1]"), "range \"3-1\" in [3-1] goes down");
        assert_eq!(err("n[a-b]"), "invalid range \"a-b\" in [a-b]: expected N or N-M");
        assert_eq!(err("n[1-]"), "invalid range \"1-\" in [1-]: expected N or N-M");
        assert_eq!(err("n[]"), "invalid range \"\" in []: expected N or N-M");
        assert_eq!(err("a,,b"), "empty node name in \"a,,b\"");
        assert_eq!(err("a:0"), "invalid port \"0\" (1 to 65535)");
        assert_eq!(err("a:70000"), "invalid port \"70000\" (1 to 65535)");
        assert_eq!(err("a:+80"), "invalid port \"+80\" (1 to 65535)");
        assert_eq!(err("no'de"), "invalid character '\\'' in node name \"no'de\"");
        assert_eq!(err("n[0-100000]"), "range \"0-100000\" has more than 100000 nodes");
        assert_eq!(err("a[0-99999],b"), "more than 100000 nodes");
    }

    #[test]
    fn hostfiles_skip_comments_and_extra_words() {
        let file = "# login node excluded\nnode01 slots=4\n\n  node02:9000   # big memory\nnode01\ngpu[1-2]\n";
        let got: Vec<String> = parse_hostfile(file).unwrap().into_iter().map(|t| t.node()).collect();
        assert_eq!(got, ["node01", "node02:9000", "gpu1", "gpu2"]);
        assert_eq!(parse_hostfile("a\nb[2-1]\n").unwrap_err(), "line 2: range \"2-1\" in [2-1] goes down");
        assert!(parse_hostfile("# nothing\n\n").unwrap().is_empty());
    }

    #[test]
    fn empty_or_missing_node_lists_are_errors() {
        let dir = std::env::temp_dir().join(format!("tau-promconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, "# none yet\n").unwrap();
        let spec = format!("@{}", file.display());
        assert_eq!(parse_nodes(&spec).unwrap_err(), format!("no node in {spec:?}"));
        std::fs::write(&file, "n1\nn2:99999\n").unwrap();
        assert_eq!(
            parse_nodes(&spec).unwrap_err(),
            format!("{}: line 2: invalid port \"99999\" (1 to 65535)", &spec[1..])
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(parse_nodes(&spec).unwrap_err().starts_with(&format!("cannot read hostfile {}: ", &spec[1..])));
    }

    #[test]
    fn one_job_per_proxy_with_its_node_label() {
        let targets = parse_list("n01,n02:9000").unwrap();
        let y = render(&targets, Some(Path::new("/opt/it's/rules.yml")), "unused");
        assert!(y.contains("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"), "{y}");
        assert!(y.contains("rule_files:\n  - '/opt/it''s/rules.yml'\n"), "{y}");
        assert!(y.ends_with(
            "scrape_configs:\n\
             \x20 - job_name: 'tau_n01'\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n\
             \x20     - targets: ['n01:1337']\n        labels:\n          node: 'n01'\n\
             \x20 - job_name: 'tau_n02:9000'\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n\
             \x20     - targets: ['n02:9000']\n        labels:\n          node: 'n02:9000'\n"
        ));
        let y = render(&targets, None, "/x/share/rules.yml");
        assert!(y.contains("# rule_files:\n#   - '/x/share/rules.yml'\n"), "{y}");
        assert!(!y.contains("\nrule_files"), "{y}");
    }
}
