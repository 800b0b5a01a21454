//! The byte-rule table against the shim's docs and `sizes` module, and the
//! expansion of rules over prototypes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn shim_file(rel: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pmpi-shim").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn the_table_in_the_shim_docs_is_written_from_the_rules() {
    let (path, text) = shim_file("src/lib.rs");
    let found: Vec<&str> =
        text.lines().skip_while(|l| !l.starts_with("//! | Family |")).take_while(|l| l.starts_with("//! |")).collect();
    let expected: Vec<String> = doc_table().lines().map(|l| format!("//! {l}")).collect();
    assert_eq!(
        found,
        expected,
        "the byte-rule table of {} is out of date; replace it with:\n{}",
        path.display(),
        expected.join("\n")
    );
}

#[test]
fn every_function_has_at_most_one_rule() {
    let mut seen = BTreeMap::new();
    for r in TABLE.iter().flat_map(|r| r.rules) {
        for n in r.names {
            if let Some(other) = seen.insert(*n, r.call) {
                panic!("{n} has two rules: {other} and {}", r.call);
            }
        }
    }
    assert!(seen.len() > 100, "{} functions only", seen.len());
}

/// Every function name (or `prefix*`) the docs show in a row is one its rules cover.
#[test]
fn documented_functions_are_those_of_the_row() {
    for row in TABLE {
        let names: Vec<&str> = row.rules.iter().flat_map(|r| r.names.iter().copied()).collect();
        let shown: Vec<&str> = row
            .functions
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            .filter(|w| w.trim_end_matches('*').chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        assert!(!shown.is_empty(), "row {:?} names no function", row.functions);
        for s in shown {
            // `File_read*` stands for every name it begins.
            let covered = match s.strip_suffix('*') {
                Some(prefix) => names.iter().any(|n| n.starts_with(prefix)),
                None => names.contains(&s),
            };
            assert!(covered, "{s} is documented in {:?} but has none of its rules", row.functions);
        }
    }
}

/// Number of parameters of `pub(crate) fn name(` in `sizes.rs`.
fn sizes_arity(sizes: &str, name: &str) -> Option<usize> {
    let start = sizes.find(&format!("pub(crate) fn {name}("))? + "pub(crate) fn (".len() + name.len();
    let params = &sizes[start..start + sizes[start..].find(')')?];
    Some(params.split(',').filter(|p| !p.trim().is_empty()).count())
}

#[test]
fn every_rule_calls_a_sizes_function_with_its_parameters() {
    let (path, sizes) = shim_file("src/sizes.rs");
    for r in TABLE.iter().flat_map(|r| r.rules) {
        let (name, args) = r.call.split_once('(').unwrap();
        let n = args.trim_end_matches(')').split(", ").count();
        assert_eq!(sizes_arity(&sizes, name), Some(n), "{} in {}", r.call, path.display());
    }
}

#[test]
fn rules_are_found_by_base_name() {
    assert_eq!(rule_of("Send"), Some("p2p($1, $2, $3)"));
    assert_eq!(rule_of("Isendrecv"), Some("sendrecv($1, $2, $3, $6, $7, $8)"));
    assert_eq!(rule_of("File_read_at"), Some("buffer($3, $4)"));
    assert_eq!(rule_of("File_read_at_all_end"), None);
    assert_eq!(rule_of("Compare_and_swap"), Some("rma_elements(3, $3, $4)"));
    assert_eq!(rule_of("Barrier"), None);
    assert_eq!(rule_of("Send_c"), None, "the `_c` suffix is removed by the caller");
}

fn header() -> Header {
    Header::parse(
        "typedef int MPI_Datatype;\ntypedef int MPI_Comm;\ntypedef long MPI_Count;\n\
         int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
         int MPI_Send_c(const void *buf, MPI_Count count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
         int MPI_Alltoallw(const void *sendbuf, const int sendcounts[], const int sdispls[], \
           const MPI_Datatype sendtypes[], void *recvbuf, const int recvcounts[], const int rdispls[], \
           const MPI_Datatype recvtypes[], MPI_Comm comm);\n\
         int MPI_Alltoallv_c(const void *sendbuf, const MPI_Count sendcounts[], const MPI_Count sdispls[], \
           MPI_Datatype sendtype, void *recvbuf, const MPI_Count *recvcounts, const MPI_Count rdispls[], \
           MPI_Datatype recvtype, MPI_Comm comm);\n\
         int MPI_Odd(const double counts[]);",
    )
}

fn expand_for(rule: &str, name: &str) -> Result<String, String> {
    let h = header();
    let p = h
        .declared
        .iter()
        .find_map(|d| match d {
            crate::Declared::Proto(p) if p.name == name => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    expand(rule, &p, &h)
}

#[test]
fn counts_and_ranks_become_i64_and_handles_keep_their_type() {
    assert_eq!(expand_for("p2p($1, $2, $3)", "MPI_Send").unwrap(), "p2p(a1 as i64, a2, a3 as i64)");
    assert_eq!(expand_for("p2p($1, $2, $3)", "MPI_Send_c").unwrap(), "p2p(a1 as i64, a2, a3 as i64)");
    assert_eq!(expand_for("rma_elements(2, $2, $3)", "MPI_Send").unwrap(), "rma_elements(2, a2, a3 as i64)");
}

#[test]
fn count_arrays_are_int_or_wide_and_type_arrays_are_types() {
    assert_eq!(
        expand_for("alltoallw($0, @1, %3, @5, %7, $8)", "MPI_Alltoallw").unwrap(),
        "alltoallw(a0, Counts::Int(a1 as *const _), Types::C(a3 as *const MPI_Datatype), \
         Counts::Int(a5 as *const _), Types::C(a7 as *const MPI_Datatype), a8)"
    );
    assert_eq!(
        expand_for("alltoallv($0, @1, $3, @5, $7, $8)", "MPI_Alltoallv_c").unwrap(),
        "alltoallv(a0, Counts::Wide(a1 as *const _), a3, Counts::Wide(a5 as *const _), a7, a8)"
    );
}

#[test]
fn a_rule_that_does_not_fit_the_prototype_is_an_error() {
    let e = expand_for("p2p($1, $2, $9)", "MPI_Send").unwrap_err();
    assert_eq!(e, "MPI_Send: rule p2p($1, $2, $9) needs argument 9");
    let e = expand_for("f(@0)", "MPI_Odd").unwrap_err();
    assert_eq!(e, "MPI_Odd: count array of double (Some(Prim(\"f64\")))");
    assert_eq!(expand_for("f($x)", "MPI_Send").unwrap_err(), "bad rule f($x)");
}
