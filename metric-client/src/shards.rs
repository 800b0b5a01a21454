//! `tau_metric_client --prometheus-config NODES --shards N -o DIR`: the
//! configuration of a cluster too big for one Prometheus server, as N shard
//! servers scraping the proxies and one global server federating what the
//! shards' recording rules computed.
//!
//! Every shard file lists every node; `hashmod` relabelling on the target
//! address keeps the ones that fall to that shard, so adding a node never
//! moves another one (changing N moves most of them).

use std::path::Path;

use crate::promconfig::{
    canonical_rules, parse_list_with_port, parse_nodes, quote, render_rules, shipped_rules, Target,
};

/// The port of a Prometheus server named without one in `--shard-servers`.
pub(crate) const PROMETHEUS_PORT: u16 = 9090;

/// The series the global server federates: every recording rule over the
/// proxies' MPI and syscall families, named level:metric:operation
/// (`function:mpi_hits_total:sum`, `node:strace_time:rate1m`); rules added
/// under the same naming, for jobs for example, are federated as they are.
pub(crate) const FEDERATED: &str = r#"{__name__=~"[a-z_]+:(mpi|strace)_[a-z0-9_]+:[a-z0-9_]+"}"#;

/// How often the global server reads the shards: the recorded rates are
/// over a minute, so every 5 s loses nothing and costs a fifth.
const FEDERATE_INTERVAL: &str = "5s";

/// One file to write: its name in the output directory and its text.
pub(crate) type File = (String, String);

/// Builds the files for `nodes` over `shards` servers (`servers`, or the
/// default ones); `rules` is loaded by every shard.
pub(crate) fn generate(
    nodes: &str,
    shards: u32,
    servers: Option<&str>,
    rules: Option<&Path>,
) -> Result<Vec<File>, String> {
    let targets = parse_nodes(nodes)?;
    let servers = shard_servers(servers, shards)?;
    let rules = canonical_rules(rules)?;
    Ok(render(&targets, &servers, rules.as_deref(), &shipped_rules()))
}

/// The shard servers: `servers` in the NODES forms (port 9090 by default),
/// one per shard in order, or `localhost:9091` ... for one monitoring host.
pub(crate) fn shard_servers(servers: Option<&str>, shards: u32) -> Result<Vec<Target>, String> {
    let Some(list) = servers else {
        let port = |i: u32| PROMETHEUS_PORT + 1 + i as u16;
        return Ok((0..shards).map(|i| Target { host: "localhost".to_owned(), port: port(i) }).collect());
    };
    let servers = parse_list_with_port(list, PROMETHEUS_PORT)?;
    if servers.len() != shards as usize {
        return Err(format!("--shard-servers names {} servers for {shards} shards", servers.len()));
    }
    Ok(servers)
}

/// `shard-0.yml` ... `shard-<N-1>.yml` and `global.yml`.
pub(crate) fn render(targets: &[Target], servers: &[Target], rules: Option<&Path>, shipped_rules: &str) -> Vec<File> {
    let n = servers.len();
    let mut files: Vec<File> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| (format!("shard-{i}.yml"), render_shard(targets, i, n, server, rules, shipped_rules)))
        .collect();
    files.push(("global.yml".to_owned(), render_global(targets.len(), servers)));
    files
}

fn nodes(count: usize) -> String {
    if count == 1 {
        "1 node".to_owned()
    } else {
        format!("{count} nodes")
    }
}

fn render_shard(
    targets: &[Target],
    shard: usize,
    shards: usize,
    server: &Target,
    rules: Option<&Path>,
    shipped_rules: &str,
) -> String {
    let mut y = String::new();
    y +=
        &format!("# Prometheus shard {shard} of {shards} scraping the tau_metric_proxy of {},\n", nodes(targets.len()));
    y += "# written by `tau_metric_client --prometheus-config --shards`. Run it on the\n";
    y += "# address global.yml federates:\n";
    y += &format!(
        "#   prometheus --config.file=shard-{shard}.yml --web.listen-address={}:{}\n",
        server.host, server.port
    );
    y += "# Every shard lists every node and keeps those whose address hashes to it\n";
    y += "# (hashmod below): a node added moves no other node; changing the number\n";
    y += "# of shards moves most, so regenerate and restart every server then.\n\n";
    y += "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n";
    y += &format!("  external_labels:\n    shard: {}\n\n", quote(&shard.to_string()));
    y += &render_rules(rules, shipped_rules);
    y += "scrape_configs:\n  - job_name: 'tau_nodes'\n    scrape_interval: 1s\n    scrape_timeout: 1s\n";
    y += "    static_configs:\n";
    for t in targets {
        y += &format!("      - targets: [{}]\n", quote(&format!("{}:{}", t.host, t.port)));
        y += &format!("        labels:\n          node: {}\n", quote(&t.node()));
    }
    y += "    relabel_configs:\n";
    y += &format!(
        "      - source_labels: [__address__]\n        modulus: {shards}\n        target_label: __tmp_hash\n        action: hashmod\n"
    );
    y += &format!("      - source_labels: [__tmp_hash]\n        regex: '{shard}'\n        action: keep\n");
    y
}

fn render_global(count: usize, servers: &[Target]) -> String {
    let mut y = String::new();
    y += &format!(
        "# Global Prometheus over {} shards scraping the tau_metric_proxy of {},\n",
        servers.len(),
        nodes(count)
    );
    y += "# written by `tau_metric_client --prometheus-config --shards`. Run it with:\n";
    y += "#   prometheus --config.file=global.yml\n";
    y += "# It federates the recording rules of every shard; each series carries the\n";
    y += "# `shard` label of its shard, so cluster-wide views add the shards up:\n";
    y += "#   sum by (function) (function:mpi_hits_total:sum)\n";
    y += "# Node-level series (node:..., node_function:...) come from one shard each.\n\n";
    y += &format!("global:\n  scrape_interval: {FEDERATE_INTERVAL}\n  scrape_timeout: {FEDERATE_INTERVAL}\n  evaluation_interval: {FEDERATE_INTERVAL}\n\n");
    y += "scrape_configs:\n  - job_name: 'tau_federate'\n    honor_labels: true\n    metrics_path: /federate\n";
    y += &format!("    params:\n      'match[]':\n        - {}\n", quote(FEDERATED));
    y += "    static_configs:\n";
    for (i, s) in servers.iter().enumerate() {
        y += &format!("      - targets: [{}]\n", quote(&format!("{}:{}", s.host, s.port)));
        y += &format!("        labels:\n          shard: {}\n", quote(&i.to_string()));
    }
    y
}

/// Writes the files into `dir`, creating it if needed.
pub(crate) fn write(dir: &Path, files: &[File]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promconfig::parse_list;

    #[test]
    fn every_shard_lists_every_node_and_keeps_its_hash() {
        let targets = parse_list("n01,n02:9000").unwrap();
        let servers = shard_servers(None, 2).unwrap();
        let files = render(&targets, &servers, Some(Path::new("/r/rules.yml")), "unused");
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["shard-0.yml", "shard-1.yml", "global.yml"]);
        for (i, (_, y)) in files[..2].iter().enumerate() {
            assert!(y.contains(&format!("--web.listen-address=localhost:{}\n", 9091 + i)), "{y}");
            assert!(y.contains(&format!("  external_labels:\n    shard: '{i}'\n")), "{y}");
            assert!(y.contains("rule_files:\n  - '/r/rules.yml'\n"), "{y}");
            assert!(y.ends_with(&format!(
                "scrape_configs:\n  - job_name: 'tau_nodes'\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
                 \x20   static_configs:\n\
                 \x20     - targets: ['n01:1337']\n        labels:\n          node: 'n01'\n\
                 \x20     - targets: ['n02:9000']\n        labels:\n          node: 'n02:9000'\n\
                 \x20   relabel_configs:\n\
                 \x20     - source_labels: [__address__]\n        modulus: 2\n        target_label: __tmp_hash\n        action: hashmod\n\
                 \x20     - source_labels: [__tmp_hash]\n        regex: '{i}'\n        action: keep\n"
            )), "{y}");
        }
        let global = &files[2].1;
        assert!(
            global.ends_with(
                "scrape_configs:\n  - job_name: 'tau_federate'\n    honor_labels: true\n    metrics_path: /federate\n\
             \x20   params:\n      'match[]':\n        - '{__name__=~\"[a-z_]+:(mpi|strace)_[a-z0-9_]+:[a-z0-9_]+\"}'\n\
             \x20   static_configs:\n\
             \x20     - targets: ['localhost:9091']\n        labels:\n          shard: '0'\n\
             \x20     - targets: ['localhost:9092']\n        labels:\n          shard: '1'\n"
            ),
            "{global}"
        );
    }

    #[test]
    fn shard_servers_default_to_one_host_or_match_the_count() {
        let named = shard_servers(Some("prom[1-2],prom3:9999"), 3).unwrap();
        let got: Vec<String> = named.iter().map(|t| format!("{}:{}", t.host, t.port)).collect();
        assert_eq!(got, ["prom1:9090", "prom2:9090", "prom3:9999"]);
        assert_eq!(shard_servers(Some("a,b"), 3).unwrap_err(), "--shard-servers names 2 servers for 3 shards");
        assert_eq!(shard_servers(Some("a[1-"), 1).unwrap_err(), "'[' without ']' in \"a[1-\"");
    }
}
