//! Generator behind the PMPI shim's wrappers: the `mpi.h` parser, the byte-rule
//! table and the code that writes the list of wrapped functions.
//!
//! `pmpi-shim/build.rs` runs the tools (the MPI compiler wrapper, the
//! preprocessor, the constant probe) and hands their output to this crate,
//! which does no I/O, so that each piece is unit-tested on small inputs by
//! `cargo test -p pmpi-gen` instead of only through a full shim build.
//!
//! - [`parse`]: tokens, typedefs and prototypes of a preprocessed header
//!   ([`Header::parse`]);
//! - [`rules`]: the byte rules, one [`rules::TABLE`] from which the table
//!   of the shim's crate docs is written ([`rules::doc_table`]);
//! - [`fortran`]: which Fortran entry points of the installed Fortran MPI
//!   libraries are wrapped, under which series, with which twin, arity and
//!   byte rule ([`Fortran::select`]);
//! - [`emit`]: which functions are wrapped ([`Api::select`]), the C probe
//!   and the generated module ([`emit::module`]).
//!
//! Modules import one way: `emit` uses `fortran`, `rules` and `parse`;
//! `fortran` uses `rules`, `parse` and `emit::Api`; `rules` uses `parse`.
#![forbid(unsafe_code)]

pub mod emit;
pub mod fortran;
pub mod parse;
pub mod rules;

pub use emit::{Api, Module};
pub use fortran::{Fortran, Library};
pub use parse::{Declared, Header, Param, Proto};

/// Parses a preprocessed `mpi.h` and writes the generated module: the list
/// of wrapped functions, the report lines and `excluded.txt` come from the
/// result. `mpicc` names the MPI in error messages; `probe` runs the C
/// program it is given and returns its output; `fortran` holds the
/// symbols of each Fortran MPI library found (none without Fortran).
pub fn generate(
    preprocessed: &str,
    mpicc: &str,
    probe: impl FnOnce(&str) -> Result<String, String>,
    fortran: &[Library],
) -> Result<Generated, String> {
    let header = Header::parse(preprocessed);
    let api = Api::select(&header);
    if api.functions.is_empty() {
        return Err(format!("no MPI function prototypes found in the mpi.h used by {mpicc}"));
    }
    if let Some(f) = api.missing_required() {
        return Err(format!("mpi.h of {mpicc} does not declare {f} (MPI 3 or later is required)"));
    }
    let fortran = Fortran::select(fortran, &api, &header)?;
    let consts = probe(&emit::probe_source(&header.aliases))?;
    let module = emit::module(&api, &header, &consts, &fortran)?;
    let mut excluded = api.excluded_list();
    excluded.push_str("# Fortran entry points exported and not wrapped\n");
    for (name, why) in &fortran.skipped {
        excluded.push_str(&format!("{name}: {why}\n"));
    }
    Ok(Generated { impl_name: emit::impl_name(&consts), excluded, skipped: api.skipped.len(), module, fortran })
}

/// Everything the build writes and reports.
#[derive(Debug)]
pub struct Generated {
    /// `openmpi`, `mpich` or `mpi`.
    pub impl_name: String,
    /// Contents of `excluded.txt`.
    pub excluded: String,
    /// Functions declared and not wrapped.
    pub skipped: usize,
    pub module: Module,
    pub fortran: Fortran,
}

impl Generated {
    /// The lines the build prints (`excluded` is where `excluded.txt` was written).
    pub fn report(&self, excluded: &std::path::Path) -> String {
        format!("{}\n{}", self.c_report(excluded), self.fortran.report(&self.impl_name))
    }

    fn c_report(&self, excluded: &std::path::Path) -> String {
        format!(
            "tau_pmpi: wrapped {} MPI functions of {} ({} with a byte-size rule), {} excluded (see {})",
            self.module.wrapped,
            self.impl_name,
            self.module.with_size,
            self.skipped,
            excluded.display()
        )
    }
}
