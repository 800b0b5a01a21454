//! The byte rules: which functions count bytes, and how, in one table.
//!
//! Each row of [`TABLE`] is one row of the table in the shim's crate docs
//! (`pmpi-shim/src/lib.rs`, checked by a test here) and holds the rules it
//! documents. A rule is a call into the shim's `sizes` module with argument
//! placeholders, and the functions it applies to, by their name without the
//! `MPI_` prefix (a large-count `_c` variant takes the rule of its base
//! name). The `sizes` functions named here must exist with that many
//! parameters (also checked by a test).

use std::fmt::Write as _;

use crate::parse::{CType, Header, Proto};

/// One row of the documented table.
#[derive(Debug)]
pub struct Row {
    /// Family, or empty for a row continuing the family above.
    pub family: &'static str,
    /// The functions, as documented.
    pub functions: &'static str,
    /// The bytes counted, as documented.
    pub bytes: &'static str,
    /// The rules this row documents.
    pub rules: &'static [Rule],
}

/// How a function's byte count is computed: a call into the shim's `sizes`
/// module with argument placeholders (`$N`: argument N as a scalar, `@N`:
/// argument N as a count array, `%N`: argument N as a datatype array).
#[derive(Debug)]
pub struct Rule {
    pub call: &'static str,
    /// Names without the `MPI_` prefix.
    pub names: &'static [&'static str],
}

const fn row(family: &'static str, functions: &'static str, bytes: &'static str, rules: &'static [Rule]) -> Row {
    Row { family, functions, bytes, rules }
}

const fn rule(call: &'static str, names: &'static [&'static str]) -> Rule {
    Rule { call, names }
}

/// Every byte rule, in the order of the documented table.
pub static TABLE: &[Row] = &[
    row(
        "Point-to-point",
        "`Send` `Bsend` `Rsend` `Ssend` `Recv` and their `I…`/`…_init` forms",
        "`count` (0 when the peer is `MPI_PROC_NULL`); a receive counts its buffer size, not the matched message",
        &[rule(
            "p2p($1, $2, $3)",
            &[
                "Send",
                "Bsend",
                "Rsend",
                "Ssend",
                "Isend",
                "Ibsend",
                "Irsend",
                "Issend",
                "Send_init",
                "Bsend_init",
                "Rsend_init",
                "Ssend_init",
                "Recv",
                "Irecv",
                "Recv_init",
            ],
        )],
    ),
    row(
        "Partitioned",
        "`Psend_init` `Precv_init`",
        "`partitions × count`",
        &[rule("p2p_parts($1, $2, $3, $4)", &["Psend_init", "Precv_init"])],
    ),
    row("Matched receive", "`Mrecv` `Imrecv`", "`count`", &[rule("buffer($1, $2)", &["Mrecv", "Imrecv"])]),
    row(
        "Send-receive",
        "`Sendrecv`",
        "`sendcount + recvcount` (each 0 for `MPI_PROC_NULL`)",
        &[rule("sendrecv($1, $2, $3, $6, $7, $8)", &["Sendrecv", "Isendrecv"])],
    ),
    row(
        "",
        "`Sendrecv_replace`",
        "`count` sent `+ count` received",
        &[rule("sendrecv_replace($1, $2, $3, $5)", &["Sendrecv_replace", "Isendrecv_replace"])],
    ),
    row(
        "Broadcast",
        "`Bcast`",
        "`count` on every rank",
        &[rule("bcast($1, $2, $3, $4)", &["Bcast", "Ibcast", "Bcast_init"])],
    ),
    row(
        "Reduction",
        "`Reduce`",
        "`count` sent (non-root, or root unless `MPI_IN_PLACE`) `+ count` received at the root",
        &[rule("reduce($0, $2, $3, $5, $6)", &["Reduce", "Ireduce", "Reduce_init"])],
    ),
    row(
        "",
        "`Allreduce` `Scan` `Exscan`",
        "`count` sent (0 if `MPI_IN_PLACE`) `+ count` received",
        &[rule(
            "allreduce($0, $2, $3)",
            &[
                "Allreduce",
                "Iallreduce",
                "Allreduce_init",
                "Scan",
                "Iscan",
                "Scan_init",
                "Exscan",
                "Iexscan",
                "Exscan_init",
            ],
        )],
    ),
    row(
        "",
        "`Reduce_scatter_block`",
        "`recvcount × n` sent (0 if `MPI_IN_PLACE`) `+ recvcount`",
        &[rule(
            "reduce_scatter_block($0, $2, $3, $5)",
            &["Reduce_scatter_block", "Ireduce_scatter_block", "Reduce_scatter_block_init"],
        )],
    ),
    row(
        "",
        "`Reduce_scatter`",
        "`Σ recvcounts` sent (0 if `MPI_IN_PLACE`) `+ recvcounts[rank]`",
        &[rule("reduce_scatter($0, @2, $3, $5)", &["Reduce_scatter", "Ireduce_scatter", "Reduce_scatter_init"])],
    ),
    row(
        "Gather",
        "`Gather` / `Gatherv`",
        "`sendcount` (0 if `MPI_IN_PLACE` at the root) `+` at the root `recvcount × n` / `Σ recvcounts`",
        &[
            rule("gather($0, $1, $2, $4, $5, $6, $7)", &["Gather", "Igather", "Gather_init"]),
            rule("gatherv($0, $1, $2, @4, $6, $7, $8)", &["Gatherv", "Igatherv", "Gatherv_init"]),
        ],
    ),
    row(
        "Scatter",
        "`Scatter` / `Scatterv`",
        "at the root `sendcount × n` / `Σ sendcounts` `+ recvcount` (0 if `MPI_IN_PLACE` at the root)",
        &[
            rule("scatter($1, $2, $3, $4, $5, $6, $7)", &["Scatter", "Iscatter", "Scatter_init"]),
            rule("scatterv(@1, $3, $4, $5, $6, $7, $8)", &["Scatterv", "Iscatterv", "Scatterv_init"]),
        ],
    ),
    row(
        "All-gather",
        "`Allgather` / `Allgatherv`",
        "`sendcount` (0 if `MPI_IN_PLACE`) `+ recvcount × n` / `Σ recvcounts`",
        &[
            rule("allgather($0, $1, $2, $4, $5, $6)", &["Allgather", "Iallgather", "Allgather_init"]),
            rule("allgatherv($0, $1, $2, @4, $6, $7)", &["Allgatherv", "Iallgatherv", "Allgatherv_init"]),
        ],
    ),
    row(
        "All-to-all",
        "`Alltoall` / `Alltoallv` / `Alltoallw`",
        "`sendcount × n` / `Σ sendcounts` / `Σ sendcounts[i] × size(sendtypes[i])` (0 if `MPI_IN_PLACE`) `+` the same \
         for the receive side",
        &[
            rule("alltoall($0, $1, $2, $4, $5, $6)", &["Alltoall", "Ialltoall", "Alltoall_init"]),
            rule("alltoallv($0, @1, $3, @5, $7, $8)", &["Alltoallv", "Ialltoallv", "Alltoallv_init"]),
            rule("alltoallw($0, @1, %3, @5, %7, $8)", &["Alltoallw", "Ialltoallw", "Alltoallw_init"]),
        ],
    ),
    row(
        "Neighbourhood",
        "`Neighbor_allgather` / `…v`",
        "`sendcount + recvcount × in` / `Σ recvcounts[0..in]`",
        &[
            rule(
                "neighbor_allgather($1, $2, $4, $5, $6)",
                &["Neighbor_allgather", "Ineighbor_allgather", "Neighbor_allgather_init"],
            ),
            rule(
                "neighbor_allgatherv($1, $2, @4, $6, $7)",
                &["Neighbor_allgatherv", "Ineighbor_allgatherv", "Neighbor_allgatherv_init"],
            ),
        ],
    ),
    row(
        "",
        "`Neighbor_alltoall` / `…v` / `…w`",
        "`sendcount × out` / `Σ sendcounts[0..out]` (`…w`: per-type sizes) `+` the same with `in` for the receive side",
        &[
            rule(
                "neighbor_alltoall($1, $2, $4, $5, $6)",
                &["Neighbor_alltoall", "Ineighbor_alltoall", "Neighbor_alltoall_init"],
            ),
            rule(
                "neighbor_alltoallv(@1, $3, @5, $7, $8)",
                &["Neighbor_alltoallv", "Ineighbor_alltoallv", "Neighbor_alltoallv_init"],
            ),
            rule(
                "neighbor_alltoallw(@1, %3, @5, %7, $8)",
                &["Neighbor_alltoallw", "Ineighbor_alltoallw", "Neighbor_alltoallw_init"],
            ),
        ],
    ),
    row(
        "One-sided",
        "`Put` `Get` `Accumulate` `Rput` `Rget` `Raccumulate`",
        "`origin_count` (0 for `MPI_PROC_NULL`)",
        &[rule("rma($1, $2, $3)", &["Put", "Rput", "Get", "Rget", "Accumulate", "Raccumulate"])],
    ),
    row(
        "",
        "`Get_accumulate` `Rget_accumulate`",
        "`origin_count + result_count`",
        &[rule("get_accumulate($1, $2, $4, $5, $6)", &["Get_accumulate", "Rget_accumulate"])],
    ),
    row(
        "",
        "`Fetch_and_op` / `Compare_and_swap`",
        r"2 / 3 elements (origin, \[compare,\] result)",
        &[rule("rma_elements(2, $2, $3)", &["Fetch_and_op"]), rule("rma_elements(3, $3, $4)", &["Compare_and_swap"])],
    ),
    row(
        "MPI-IO",
        "`File_read*` `File_write*` `File_iread*` `File_iwrite*` incl. `_at`, `_all`, `_shared`, `_ordered`, `_begin`",
        "`count` (the `_end` calls count none)",
        &[
            rule(
                "buffer($2, $3)",
                &[
                    "File_read",
                    "File_read_all",
                    "File_write",
                    "File_write_all",
                    "File_iread",
                    "File_iwrite",
                    "File_iread_all",
                    "File_iwrite_all",
                    "File_read_shared",
                    "File_write_shared",
                    "File_iread_shared",
                    "File_iwrite_shared",
                    "File_read_ordered",
                    "File_write_ordered",
                    "File_read_all_begin",
                    "File_write_all_begin",
                    "File_read_ordered_begin",
                    "File_write_ordered_begin",
                ],
            ),
            rule(
                "buffer($3, $4)",
                &[
                    "File_read_at",
                    "File_read_at_all",
                    "File_write_at",
                    "File_write_at_all",
                    "File_iread_at",
                    "File_iwrite_at",
                    "File_iread_at_all",
                    "File_iwrite_at_all",
                    "File_read_at_all_begin",
                    "File_write_at_all_begin",
                ],
            ),
        ],
    ),
];

/// The rule of a function, by its name without `MPI_` (and without `_c`).
pub fn rule_of(base: &str) -> Option<&'static str> {
    TABLE.iter().flat_map(|r| r.rules).find(|r| r.names.contains(&base)).map(|r| r.call)
}

/// The table of the crate docs, one Markdown line per row.
pub fn doc_table() -> String {
    let mut out = String::from("| Family | Functions | Bytes |\n|---|---|---|\n");
    for r in TABLE {
        let family = if r.family.is_empty() { "| |".to_owned() } else { format!("| {} |", r.family) };
        writeln!(out, "{family} {} | {} |", r.functions, r.bytes).unwrap();
    }
    out
}

/// How a Fortran entry point passes a choice buffer (`void *` in C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// `mpif.h` / `use mpi`: the address, `MPI_IN_PLACE` being a common block.
    Mpifh,
    /// `use mpi_f08` with plain addresses (Open MPI's ignore-TKR interface).
    F08,
    /// `use mpi_f08` with a Fortran array descriptor whose first word is the
    /// address (MPICH's `_f08ts_` entries).
    Descriptor,
}

/// Whose arguments a rule is expanded over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Args {
    /// The C function's own arguments, of the prototype's types.
    C,
    /// A Fortran entry point: every argument by reference (`usize`), in the
    /// C prototype's order; handles are `MPI_Fint`s converted with the
    /// implementation's `*_f2c`.
    Fortran(Buffers),
}

/// Expands a rule with the wrapper's arguments (`a0`, `a1`, ...): the
/// `sizes` call the wrapper makes after a successful call.
pub(crate) fn expand(rule: &str, proto: &Proto, header: &Header) -> Result<String, String> {
    expand_for(rule, proto, header, Args::C)
}

/// [`expand`] for the arguments of a C function or of a Fortran entry point.
pub(crate) fn expand_for(rule: &str, proto: &Proto, header: &Header, args: Args) -> Result<String, String> {
    let mut out = String::new();
    let b = rule.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if matches!(c, '$' | '@' | '%') {
            let s = i + 1;
            let mut e = s;
            while e < b.len() && b[e].is_ascii_digit() {
                e += 1;
            }
            let n: usize = rule[s..e].parse().map_err(|_| format!("bad rule {rule}"))?;
            let p = proto.params.get(n).ok_or_else(|| format!("{}: rule {rule} needs argument {n}", proto.name))?;
            if let Args::Fortran(buffers) = args {
                out.push_str(&fortran_arg(c, n, p, header, buffers, &proto.name)?);
                i = e;
                continue;
            }
            match c {
                '$' => {
                    // Counts are `int` or `MPI_Count` (large-count variants)
                    // and ranks are `int`: all become i64. Buffers and
                    // handles keep their own type.
                    if matches!(p.rust.as_str(), "c_int" | "MPI_Count" | "c_long" | "c_longlong") {
                        write!(out, "a{n} as i64").unwrap()
                    } else {
                        write!(out, "a{n}").unwrap()
                    }
                }
                '@' => {
                    let elem = p.pointee.as_deref().unwrap_or("int");
                    let wide = match header.resolve(elem) {
                        Some(CType::Prim("c_int")) => false,
                        Some(CType::Prim("c_long" | "c_longlong")) => true,
                        other => return Err(format!("{}: count array of {elem} ({other:?})", proto.name)),
                    };
                    let variant = if wide { "Wide" } else { "Int" };
                    write!(out, "Counts::{variant}(a{n} as *const _)").unwrap()
                }
                _ => write!(out, "Types::C(a{n} as *const MPI_Datatype)").unwrap(),
            }
            i = e;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// One placeholder of a rule over a Fortran entry point's arguments, read
/// through the readers of Fortran arguments in the shim's own `fortran` module.
fn fortran_arg(
    c: char,
    n: usize,
    p: &crate::parse::Param,
    header: &Header,
    b: Buffers,
    f: &str,
) -> Result<String, String> {
    let wide = |elem: &str| match header.resolve(elem) {
        Some(CType::Prim("c_int")) => Ok(false),
        Some(CType::Prim("c_long" | "c_longlong")) => Ok(true),
        other => Err(format!("{f}: Fortran count of {elem} ({other:?})")),
    };
    Ok(match c {
        '$' => match p.rust.as_str() {
            "MPI_Datatype" => format!("ftype(a{n})"),
            "MPI_Comm" => format!("fcomm(a{n})"),
            "*mut c_void" if p.pointee.as_deref() == Some("void") => {
                let reader = match b {
                    Buffers::Mpifh => "fbuf_h",
                    Buffers::F08 => "fbuf_08",
                    Buffers::Descriptor => "fbuf_ts",
                };
                format!("{reader}(a{n})")
            }
            "c_int" => format!("fint(a{n})"),
            ty if matches!(header.resolve(ty), Some(CType::Prim("c_long" | "c_longlong"))) => format!("fcount(a{n})"),
            ty => return Err(format!("{f}: Fortran argument {n} of type {ty}")),
        },
        '@' => {
            let variant = if wide(p.pointee.as_deref().unwrap_or("int"))? { "Wide" } else { "Int" };
            format!("Counts::{variant}(a{n} as *const _)")
        }
        _ => format!("Types::Fortran(a{n} as *const Fint)"),
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
