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
//! - [`emit`]: which functions are wrapped ([`Api::select`]), the C probe
//!   and the generated module ([`emit::module`]).
//!
//! Modules import one way: `emit` uses `rules` and `parse`, `rules` uses
//! `parse`.
#![forbid(unsafe_code)]

pub mod emit;
pub mod parse;
pub mod rules;

pub use emit::{Api, Module};
pub use parse::{Declared, Header, Param, Proto};

/// Parses a preprocessed `mpi.h` and writes the generated module: the list
/// of wrapped functions, the report line and `excluded.txt` come from the
/// result. `mpicc` names the MPI in error messages; `probe` runs the C
/// program it is given and returns its output.
pub fn generate(
    preprocessed: &str,
    mpicc: &str,
    probe: impl FnOnce(&str) -> Result<String, String>,
) -> Result<Generated, String> {
    let header = Header::parse(preprocessed);
    let api = Api::select(&header);
    if api.functions.is_empty() {
        return Err(format!("no MPI function prototypes found in the mpi.h used by {mpicc}"));
    }
    if let Some(f) = api.missing_required() {
        return Err(format!("mpi.h of {mpicc} does not declare {f} (MPI 3 or later is required)"));
    }
    let consts = probe(&emit::probe_source(&header.aliases))?;
    let module = emit::module(&api, &header, &consts)?;
    Ok(Generated {
        impl_name: emit::impl_name(&consts),
        excluded: api.excluded_list(),
        skipped: api.skipped.len(),
        module,
    })
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
}

impl Generated {
    /// The line the build prints (`excluded` is where `excluded.txt` was written).
    pub fn report(&self, excluded: &std::path::Path) -> String {
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
