//! The Fortran side: which entry points the installed Fortran MPI libraries
//! export, the C function each one counts under, its profiling twin, how
//! many arguments it takes and its byte rule.
//!
//! The input is the list of defined dynamic symbols of each Fortran MPI
//! library (`nm -D --defined-only`), never a list typed here: every name
//! form a library exports (`mpi_send_`, `mpi_send__`, `mpi_send`,
//! `MPI_SEND`, Open MPI's `MPI_Send_f`/`MPI_Send_f08`/`mpi_send_f08_`,
//! MPICH's `mpi_send_f08ts_` and `_large_` forms) is a candidate. A
//! candidate is wrapped when it names a C function the shim wraps (the
//! suffix of its form removed, case ignored; `_large_` forms are the `_c`
//! functions) or an MPI-1 routine that only Fortran still exports, and when
//! the library exports its twin: `p`/`P` prefixed (Open MPI, MPICH's
//! `mpif.h` forms), else MPICH's `pmpir_`/`pmpixr_` for its `mpi_f08`
//! forms. The wrapper forwards to the twin, never to C, so status objects,
//! hidden string lengths and the optional `ierror` stay the library's.
//!
//! Arguments are all passed by reference, in the C prototype's order, then
//! `ierror`, then one hidden length per character argument: every entry is
//! forwarded as that many `usize` (exact for these integer-class ABIs).

use std::collections::{BTreeMap, BTreeSet};

use crate::parse::{Header, Proto};
use crate::rules::{self, Args, Buffers};
use crate::Api;

/// The defined symbols of one Fortran MPI library.
#[derive(Debug, Default)]
pub struct Library {
    /// File name up to `.so` (`libmpi_mpifh`), as `DT_NEEDED` entries start.
    pub stem: String,
    pub functions: BTreeSet<String>,
    pub objects: BTreeSet<String>,
}

impl Library {
    /// From the output of `nm -D --defined-only` (`ADDRESS TYPE NAME`).
    pub fn from_nm(stem: &str, nm: &str) -> Library {
        let mut lib = Library { stem: stem.to_owned(), ..Library::default() };
        for line in nm.lines() {
            let mut w = line.split_whitespace().rev();
            let (Some(name), Some(kind)) = (w.next(), w.next()) else { continue };
            match kind {
                "T" | "W" | "i" => lib.functions.insert(name.to_owned()),
                "B" | "D" | "V" | "R" | "G" | "S" => lib.objects.insert(name.to_owned()),
                _ => false,
            };
        }
        lib
    }

    /// Exports at least one MPI Fortran routine name (`mpi_*`, `MPI_*`).
    pub fn exports_mpi(&self) -> bool {
        self.functions.iter().any(|f| is_candidate(&f.to_ascii_lowercase()))
    }
}

/// One Fortran entry point to define.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub twin: String,
    /// The series it counts under (`MPI_Send`), also its hook.
    pub series: String,
    /// Number of `usize` arguments forwarded.
    pub arity: usize,
    /// Index of `ierror` (absent for MPI-1 routines without a C prototype).
    pub ierr: Option<usize>,
    /// The `crate::sizes` call, if it has a byte rule.
    pub bytes: Option<String>,
    pub library: String,
    /// A `use mpi_f08` form (else `mpif.h` / `use mpi`).
    pub f08: bool,
}

/// Every Fortran entry point to wrap, and those skipped.
#[derive(Debug, Default)]
pub struct Fortran {
    /// Sorted by name.
    pub entries: Vec<Entry>,
    /// Series of routines that have no C function (MPI-1 routines removed
    /// from C), after the C functions' slots.
    pub extra_series: Vec<String>,
    /// Name and reason.
    pub skipped: Vec<(String, String)>,
    /// Stems of the libraries examined.
    pub libraries: Vec<String>,
    /// How `MPI_IN_PLACE` is recognised for `mpif.h`/`use mpi` and for
    /// `use mpi_f08`: a symbol and whether it is a pointer variable holding
    /// the sentinel's address (else the symbol's address is the sentinel).
    pub in_place: [Option<(String, bool)>; 2],
}

/// Every form suffix, longest first: what it leaves, and the binding.
const FORMS: [(&str, Form); 9] = [
    ("_f08ts_large_", Form::Large(Buffers::Descriptor)),
    ("_f08_large_", Form::Large(Buffers::F08)),
    ("_f08ts_", Form::Plain(Buffers::Descriptor)),
    ("_f08_", Form::Plain(Buffers::F08)),
    ("_f08", Form::Plain(Buffers::F08)),
    ("_f", Form::Plain(Buffers::Mpifh)),
    ("__", Form::Plain(Buffers::Mpifh)),
    ("_", Form::Plain(Buffers::Mpifh)),
    ("", Form::Plain(Buffers::Mpifh)),
];

#[derive(Clone, Copy, Debug)]
enum Form {
    Plain(Buffers),
    /// The large-count (`MPI_Count`) variant: the C `_c` function.
    Large(Buffers),
}

/// Known ways a Fortran binding marks `MPI_IN_PLACE`, tried in order: the
/// symbol, whether it is a pointer variable, and whether it serves
/// `mpif.h`/`use mpi` and `use mpi_f08`.
const IN_PLACE: [(&str, bool, bool, bool); 3] = [
    // Open MPI: a common block, the same for every binding.
    ("mpi_fortran_in_place_", false, true, true),
    // MPICH mpif.h: a pointer set at the first Fortran call.
    ("MPIR_F_MPI_IN_PLACE", true, true, false),
    // MPICH mpi_f08: the address of this object.
    ("MPIR_F08_MPI_IN_PLACE", false, false, true),
];

/// C functions whose first arguments the Fortran binding does not have
/// (`argc`, `argv`), and how many.
const DROPPED: [(&str, usize); 2] = [("MPI_Init", 2), ("MPI_Init_thread", 2)];

/// Arguments forwarded for a routine without a C prototype (the most any
/// MPI Fortran routine takes: `MPI_RGET_ACCUMULATE`, 13 and `ierror`).
pub const MAX_ARITY: usize = 14;

/// Fortran names not wrapped whatever the C side does, and why.
fn excluded(stem: &str) -> Option<&'static str> {
    if stem.starts_with("mpi_sizeof") {
        return Some("MPI_SIZEOF: a compile-time size query, no MPI call");
    }
    if stem.ends_with("_fn") || stem.ends_with("_fn_null") || stem.contains("_fn_null_") {
        return Some("predefined callback that MPI calls, not a call into MPI");
    }
    match stem {
        "mpi_f_sync_reg" => Some("MPI_F_SYNC_REG: a compiler barrier for Fortran buffers, no MPI call"),
        "mpi_aint_add" | "mpi_aint_diff" => Some("address arithmetic, no communication (a macro in Open MPI's mpi.h)"),
        "mpi_wtime" | "mpi_wtick" => Some("timer used inside measured regions; wrapping it would perturb them"),
        _ => None,
    }
}

/// `MPI_TYPE_HVECTOR` → `MPI_Type_hvector`: how MPI spells a routine.
fn canonical(stem: &str) -> String {
    let (prefix, rest) = stem.split_once('_').unwrap_or((stem, ""));
    let mut out = prefix.to_ascii_uppercase();
    out.push('_');
    let mut chars = rest.chars();
    if let Some(c) = chars.next() {
        out.push(c.to_ascii_uppercase());
        out.extend(chars);
    }
    out
}

/// What a lower-case base name is.
enum Target<'a> {
    /// A C function the shim wraps.
    Wrapped(&'a str, &'a Proto),
    /// A C function the shim does not wrap, and why.
    Skipped(&'a str),
    /// Only Fortran exports it (as the upper-case form of every routine).
    FortranOnly,
}

impl Fortran {
    /// Chooses the entry points of `libs` to wrap, given the C functions.
    pub fn select(libs: &[Library], api: &Api, header: &Header) -> Result<Fortran, String> {
        let mut c: BTreeMap<String, Target> = BTreeMap::new();
        for (name, why) in &api.skipped {
            c.insert(name.to_ascii_lowercase(), Target::Skipped(why));
        }
        for (name, p) in &api.functions {
            c.insert(name.to_ascii_lowercase(), Target::Wrapped(name, p));
        }
        let functions: BTreeSet<&str> = libs.iter().flat_map(|l| l.functions.iter().map(String::as_str)).collect();
        // Every routine of mpif.h is exported upper case; those without a C
        // function are the MPI-1 routines removed from C.
        for f in &functions {
            let lower = f.to_ascii_lowercase();
            if f.chars().all(|ch| !ch.is_ascii_lowercase()) && is_candidate(&lower) {
                c.entry(lower).or_insert(Target::FortranOnly);
            }
        }
        let mut out = Fortran { libraries: libs.iter().map(|l| l.stem.clone()).collect(), ..Fortran::default() };
        out.in_place = in_place(libs);
        let mut extra = BTreeSet::new();
        let mut twins = BTreeSet::new();
        for lib in libs {
            for name in &lib.functions {
                let lower = name.to_ascii_lowercase();
                if !is_candidate(&lower) || api.functions.contains_key(name) {
                    continue;
                }
                let mut skip = |why: String| out.skipped.push((name.clone(), why));
                let Some((stem, form, target)) = resolve(&lower, &c) else {
                    skip("no C function or Fortran routine of this name".to_owned());
                    continue;
                };
                if let Some(why) = excluded(&stem) {
                    skip(why.to_owned());
                    continue;
                }
                let Some(twin) = twin(name, &functions) else {
                    skip("no profiling twin exported".to_owned());
                    continue;
                };
                let f08 = lower.contains("f08");
                let entry = match target {
                    Target::Skipped(why) => {
                        skip(format!("as its C function: {why}"));
                        continue;
                    }
                    Target::FortranOnly => {
                        let series = canonical(&stem);
                        extra.insert(series.clone());
                        let library = lib.stem.clone();
                        Entry {
                            name: name.clone(),
                            twin,
                            series,
                            arity: MAX_ARITY,
                            ierr: None,
                            bytes: None,
                            library,
                            f08,
                        }
                    }
                    Target::Wrapped(series, proto) => {
                        let buffers = match form {
                            Form::Plain(b) | Form::Large(b) => b,
                        };
                        entry(name, twin, series, proto, api, header, buffers, &lib.stem, f08)?
                    }
                };
                if !twins.insert(entry.twin.clone()) {
                    return Err(format!("{}: twin {} shared by two entry points", entry.name, entry.twin));
                }
                out.entries.push(entry);
            }
        }
        out.entries.sort_by(|a, b| a.name.cmp(&b.name));
        out.extra_series = extra.into_iter().collect();
        Ok(out)
    }

    /// The report line of the build.
    pub fn report(&self, impl_name: &str) -> String {
        let f08 = self.entries.iter().filter(|e| e.f08).count();
        let with_size = self.entries.iter().filter(|e| e.bytes.is_some()).count();
        format!(
            "tau_pmpi: wrapped {} Fortran entry points of {impl_name}: {} for mpif.h/use mpi, {f08} for use mpi_f08 \
             ({with_size} with a byte-size rule; from {}), {} excluded",
            self.entries.len(),
            self.entries.len() - f08,
            if self.libraries.is_empty() { "no Fortran library found".to_owned() } else { self.libraries.join(" ") },
            self.skipped.len(),
        )
    }
}

/// A name that may be an MPI Fortran entry point (twins start with `p`).
fn is_candidate(lower: &str) -> bool {
    lower.starts_with("mpi_") || lower.starts_with("mpix_")
}

/// The base name, form and target of a lower-case exported name: the
/// longest form suffix whose removal leaves a known name.
fn resolve<'a>(lower: &str, c: &'a BTreeMap<String, Target<'a>>) -> Option<(String, Form, &'a Target<'a>)> {
    for (suffix, form) in FORMS {
        let Some(stem) = lower.strip_suffix(suffix) else { continue };
        let base = match form {
            Form::Large(_) => format!("{stem}_c"),
            Form::Plain(_) => stem.to_owned(),
        };
        // Open MPI's `_cptr` variants take the base routine's arguments;
        // MPICH names `MPIX_Delete_error_*` `mpi_delete_error_*_f08_`.
        let mut tries: Vec<String> = base.strip_suffix("_cptr").map(str::to_owned).into_iter().collect();
        tries.push(base.clone());
        if let Some(rest) = base.strip_prefix("mpi_") {
            tries.push(format!("mpix_{rest}"));
        }
        for t in tries {
            if let Some(target) = c.get(&t) {
                return Some((stem.to_owned(), form, target));
            }
        }
        if excluded(stem).is_some() {
            return Some((stem.to_owned(), form, &Target::FortranOnly));
        }
    }
    None
}

/// The library's own Fortran routine behind `name`.
fn twin(name: &str, functions: &BTreeSet<&str>) -> Option<String> {
    let mut tries = vec![if name.starts_with('M') { format!("P{name}") } else { format!("p{name}") }];
    if let Some(rest) = name.strip_prefix("mpix_") {
        tries.push(format!("pmpixr_{rest}"));
    } else if let Some(rest) = name.strip_prefix("mpi_") {
        tries.push(format!("pmpir_{rest}"));
    }
    tries.into_iter().find(|t| functions.contains(t.as_str()))
}

#[allow(clippy::too_many_arguments)]
fn entry(
    name: &str,
    twin: String,
    series: &str,
    proto: &Proto,
    api: &Api,
    header: &Header,
    buffers: Buffers,
    library: &str,
    f08: bool,
) -> Result<Entry, String> {
    let dropped = DROPPED.iter().find(|(f, _)| *f == series).map_or(0, |(_, n)| *n);
    let params = &proto.params[dropped.min(proto.params.len())..];
    let chars = params.iter().filter(|p| p.pointee.as_deref() == Some("char")).count();
    let ierr = params.len();
    let bytes = match (dropped, api.rule(series, proto)) {
        (0, Some(rule)) => Some(rules::expand_for(rule, proto, header, Args::Fortran(buffers))?),
        _ => None,
    };
    Ok(Entry {
        name: name.to_owned(),
        twin,
        series: series.to_owned(),
        arity: ierr + 1 + chars,
        ierr: Some(ierr),
        bytes,
        library: library.to_owned(),
        f08,
    })
}

fn in_place(libs: &[Library]) -> [Option<(String, bool)>; 2] {
    let exported = |s: &str| libs.iter().any(|l| l.objects.contains(s));
    let pick = |f08: bool| {
        IN_PLACE
            .iter()
            .find(|(sym, _, h, f)| (if f08 { *f } else { *h }) && exported(sym))
            .map(|(sym, ptr, _, _)| ((*sym).to_owned(), *ptr))
    };
    [pick(false), pick(true)]
}

#[cfg(test)]
#[path = "fortran_tests.rs"]
mod tests;
