//! What the shim's build writes: the C probe, the generated module and the
//! list of functions not wrapped.
//!
//! The generated module holds the MPI constants and type sizes (printed by
//! the probe), the type aliases, the function names, and
//! `for_each_function!`: one line per wrapped function (slot, name, PMPI
//! twin, Rust signature, byte rule), handed to a macro of the shim. The
//! shim expands that list twice, into the `PMPI_*` twins (`pmpi.rs`) and
//! into the exported entry points (`entry.rs`); no function body is
//! written here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fortran::{Entry, Fortran};
use crate::parse::{Declared, Header, Proto};
use crate::rules;

/// Functions deliberately not wrapped, and why (documented in the crate docs).
pub fn excluded(name: &str) -> Option<&'static str> {
    const CONVERTERS: [&str; 6] = ["_c2f", "_f2c", "_c2f08", "_f082c", "_f082f", "_f2f08"];
    if CONVERTERS.iter().any(|s| name.ends_with(s)) {
        return Some("handle/status converter between language bindings, no communication");
    }
    match name {
        "MPI_Wtime" | "MPI_Wtick" => Some("timer used inside measured regions; wrapping it would perturb them"),
        _ => None,
    }
}

/// The functions the shim itself calls (to count bytes); a header without
/// them is too old.
pub const REQUIRED: [&str; 9] = [
    "MPI_Type_size_x",
    "MPI_Comm_size",
    "MPI_Comm_rank",
    "MPI_Comm_test_inter",
    "MPI_Comm_remote_size",
    "MPI_Topo_test",
    "MPI_Cartdim_get",
    "MPI_Graph_neighbors_count",
    "MPI_Dist_graph_neighbors_count",
];

/// The constants the byte rules compare with (printed by the probe).
const CONSTANTS: [&str; 7] =
    ["MPI_SUCCESS", "MPI_ROOT", "MPI_PROC_NULL", "MPI_UNDEFINED", "MPI_CART", "MPI_GRAPH", "MPI_DIST_GRAPH"];

/// The functions to wrap, and those declared but not wrapped.
#[derive(Debug)]
pub struct Api {
    /// By name, which is also slot order.
    pub functions: BTreeMap<String, Proto>,
    /// Name and reason, in the order found.
    pub skipped: Vec<(String, String)>,
}

impl Api {
    /// Every `MPI_*` prototype with a `PMPI_*` twin, except the excluded.
    pub fn select(header: &Header) -> Api {
        let mut functions = BTreeMap::new();
        let mut skipped = Vec::new();
        for d in &header.declared {
            match d {
                Declared::Proto(p) => match excluded(&p.name) {
                    Some(why) => skipped.push((p.name.clone(), why.to_owned())),
                    None => {
                        functions.insert(p.name.clone(), p.clone());
                    }
                },
                Declared::Skip(name, why) => skipped.push((name.clone(), why.clone())),
            }
        }
        functions.retain(|name, _| {
            let keep = header.pmpi.contains(&format!("P{name}"));
            if !keep {
                skipped.push((name.clone(), "no PMPI twin declared".to_owned()));
            }
            keep
        });
        Api { functions, skipped }
    }

    /// The first function of [`REQUIRED`] missing.
    pub fn missing_required(&self) -> Option<&'static str> {
        REQUIRED.into_iter().find(|f| !self.functions.contains_key(*f))
    }

    /// The byte rule of a function, if it has one: by its name without
    /// `MPI_`/`MPIX_` (an `MPIX_` function takes its MPI base's rule, a
    /// large-count `_c` variant its base function's).
    pub fn rule(&self, name: &str, p: &Proto) -> Option<&'static str> {
        let base = name.strip_prefix("MPIX_").or_else(|| name.strip_prefix("MPI_")).unwrap_or(name);
        let base = if base.ends_with("_c") && self.functions.contains_key(&name[..name.len() - 2]) {
            &base[..base.len() - 2]
        } else {
            base
        };
        if p.returns_int() {
            rules::rule_of(base)
        } else {
            None
        }
    }

    /// The byte-rule expression of a function, if it has a rule.
    fn bytes(&self, name: &str, p: &Proto, header: &Header) -> Result<Option<String>, String> {
        self.rule(name, p).map(|r| rules::expand(r, p, header)).transpose()
    }

    /// `$OUT_DIR/excluded.txt`.
    pub fn excluded_list(&self) -> String {
        let mut out = String::from("# Functions declared by mpi.h and not wrapped\n");
        for (name, why) in &self.skipped {
            writeln!(out, "{name}: {why}").unwrap();
        }
        out
    }
}

/// A C program printing, as Rust, the implementation's name, the constants
/// the rules need and a compile-time check of each alias's size.
pub fn probe_source(aliases: &BTreeMap<String, String>) -> String {
    let mut c = String::from(
        "#include <mpi.h>\n#include <stdio.h>\n#include <stdint.h>\nint main(void) {\n\
         #ifdef OPEN_MPI\n  puts(\"pub(crate) const IMPL: &str = \\\"openmpi\\\";\");\n\
         #elif defined(MPICH)\n  puts(\"pub(crate) const IMPL: &str = \\\"mpich\\\";\");\n\
         #else\n  puts(\"pub(crate) const IMPL: &str = \\\"mpi\\\";\");\n#endif\n",
    );
    c.push_str(
        "  printf(\"pub(crate) const MPI_IN_PLACE: usize = %lu;\\n\", (unsigned long)(uintptr_t)MPI_IN_PLACE);\n",
    );
    // Fortran INTEGER handles and counts (`mpif.h` and `mpi_f08` alike).
    c.push_str("  printf(\"pub(crate) type Fint = i%zu;\\n\", 8 * sizeof(MPI_Fint));\n");
    for k in CONSTANTS {
        writeln!(c, "  printf(\"pub(crate) const {k}: c_int = %d;\\n\", (int)({k}));").unwrap();
    }
    for name in aliases.keys() {
        writeln!(
            c,
            "  printf(\"const _: () = assert!(core::mem::size_of::<{name}>() == %zu, \\\"size of {name}\\\");\\n\", sizeof({name}));"
        )
        .unwrap();
    }
    c.push_str("  return 0;\n}\n");
    c
}

/// The implementation named by the probe's output (`openmpi`, `mpich`, `mpi`).
pub fn impl_name(probe_output: &str) -> String {
    probe_output.lines().next().unwrap_or_default().rsplit('"').nth(1).unwrap_or("mpi").to_owned()
}

/// The generated module.
#[derive(Debug)]
pub struct Module {
    pub source: String,
    /// Functions wrapped.
    pub wrapped: usize,
    /// Of which with a byte rule.
    pub with_size: usize,
}

/// One line of `for_each_function!`: `SLOT NAME TWIN(ARGS) -> RET => RULE;`
/// (no `->` for `void`, no `=>` without a byte rule), then the C prototype
/// as a comment.
fn function_line(idx: usize, p: &Proto, bytes: Option<&str>) -> String {
    let args: Vec<String> = p.params.iter().enumerate().map(|(i, q)| format!("a{i}: {}", q.rust)).collect();
    let ret = if p.ret == "()" { String::new() } else { format!(" -> {}", p.ret) };
    let rule = bytes.map(|b| format!(" => {b}")).unwrap_or_default();
    let c: Vec<&str> = p.params.iter().map(|q| q.c.as_str()).collect();
    format!("{idx} {name} P{name}({}){ret}{rule}; // {name}({})", args.join(", "), c.join(", "), name = p.name)
}

/// One line of `for_each_fortran_entry!`: `INDEX SLOT SERIES NAME TWIN
/// (ARGS) ierr ARG => RULE;` (no `ierr` for a routine without a C
/// prototype, no `=>` without a byte rule), then the library as a comment.
fn fortran_line(idx: usize, slot: usize, e: &Entry) -> String {
    let args: Vec<String> = (0..e.arity).map(|i| format!("a{i}")).collect();
    let ierr = e.ierr.map(|i| format!(" ierr a{i}")).unwrap_or_default();
    let rule = e.bytes.as_deref().map(|b| format!(" => {b}")).unwrap_or_default();
    format!("{idx} {slot} {} {} {}({}){ierr}{rule}; // {}", e.series, e.name, e.twin, args.join(", "), e.library)
}

/// The Fortran part of the module: sentinels, libraries and the entry list.
fn fortran_part(g: &mut String, fortran: &Fortran, slots: &BTreeMap<&str, usize>) -> Result<(), String> {
    writeln!(g, "pub(crate) const NFORTRAN: usize = {};", fortran.entries.len()).unwrap();
    let sentinel = |s: &Option<(String, bool)>| match s {
        Some((sym, ptr)) => format!("Some((c\"{sym}\", {ptr}))"),
        None => "None".to_owned(),
    };
    writeln!(
        g,
        "pub(crate) const FORTRAN_IN_PLACE: [Option<(&core::ffi::CStr, bool)>; 2] = [{}, {}];",
        sentinel(&fortran.in_place[0]),
        sentinel(&fortran.in_place[1])
    )
    .unwrap();
    let libs = format!("{}\0", fortran.libraries.join(" "));
    writeln!(g, "pub(crate) const FORTRAN_LIBRARIES: [u8; {}] = *b\"{}\\0\";", libs.len(), &libs[..libs.len() - 1])
        .unwrap();
    g.push_str(
        "\n/// Calls `$m! { ... }` with one line per Fortran entry point: index,\n\
         /// slot, series, exported name, twin, arguments, `ierror` and, when it\n\
         /// has a byte rule, the `crate::sizes` call over the arguments.\n\
         macro_rules! for_each_fortran_entry {\n    ($m:ident) => {\n        $m! {\n",
    );
    for (idx, e) in fortran.entries.iter().enumerate() {
        let slot = *slots.get(e.series.as_str()).ok_or_else(|| format!("{}: no slot for {}", e.name, e.series))?;
        writeln!(g, "            {}", fortran_line(idx, slot, e)).unwrap();
    }
    g.push_str("        }\n    };\n}\npub(crate) use for_each_fortran_entry;\n");
    Ok(())
}

/// Writes the module from the header, the probe's output and the Fortran entry points.
pub fn module(api: &Api, header: &Header, probe_output: &str, fortran: &Fortran) -> Result<Module, String> {
    let mut g = String::from("// Generated by build.rs from the installed mpi.h: do not edit.\n\n");
    g.push_str(probe_output);
    for (name, ty) in &header.aliases {
        writeln!(g, "pub(crate) type {name} = {ty};").unwrap();
    }
    let n = api.functions.len();
    let names: Vec<&str> =
        api.functions.keys().map(String::as_str).chain(fortran.extra_series.iter().map(String::as_str)).collect();
    writeln!(g, "pub(crate) const NFUNCS: usize = {};", names.len()).unwrap();
    g.push_str("pub(crate) static NAMES: [&str; NFUNCS] = [\n");
    for name in &names {
        writeln!(g, "    \"{name}\",").unwrap();
    }
    g.push_str("];\n");
    let slots: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut has_size = String::from("pub(crate) static HAS_SIZE: [bool; NFUNCS] = [\n");
    let mut list = String::from(
        "\n/// Calls `$m! { ... }` with one line per wrapped function: slot, name,\n\
         /// PMPI twin, Rust signature and, when it has a byte rule, the\n\
         /// `crate::sizes` call over the arguments.\n\
         macro_rules! for_each_function {\n    ($m:ident) => {\n        $m! {\n",
    );
    let mut with_size = 0;
    for (idx, (name, p)) in api.functions.iter().enumerate() {
        let bytes = api.bytes(name, p, header)?;
        with_size += usize::from(bytes.is_some());
        writeln!(has_size, "    {},", bytes.is_some()).unwrap();
        writeln!(list, "            {}", function_line(idx, p, bytes.as_deref())).unwrap();
    }
    for _ in &fortran.extra_series {
        has_size.push_str("    false,\n");
    }
    has_size.push_str("];\n");
    list.push_str("        }\n    };\n}\npub(crate) use for_each_function;\n");
    g.push_str(&has_size);
    g.push_str(&list);
    fortran_part(&mut g, fortran, &slots)?;
    Ok(Module { source: g, wrapped: n, with_size })
}

#[cfg(test)]
#[path = "emit_tests.rs"]
mod tests;
