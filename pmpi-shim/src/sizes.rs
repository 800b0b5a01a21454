//! Byte counts of MPI calls, one function per family (rules in the crate docs).
//!
//! Which function applies to which MPI call, with which arguments, is the
//! rule table of `pmpi-gen` (`rules.rs`); a test there checks that every
//! function it names is defined here with as many parameters.
//!
//! Called only after the MPI call returned `MPI_SUCCESS`, so every argument
//! that matters at this rank is valid; arguments that MPI declares
//! insignificant at this rank (e.g. the receive side of a gather on a
//! non-root rank) are never looked at. Each function asks MPI at most once
//! per call for each fact it needs (a datatype's size, whether the
//! communicator is an intercommunicator, its size, this rank), since each
//! question is a call into the MPI library on the program's time.

use core::ffi::c_void;

use crate::mpi::{MPI_Comm, MPI_Datatype, MPI_PROC_NULL, MPI_ROOT};
use crate::pmpi::{comm_rank, comm_size, is_in_place, is_inter, neighbors, remote_size, type_size, Counts, Types};

fn bytes(count: i64, dt: MPI_Datatype) -> u64 {
    if count <= 0 {
        0
    } else {
        (count as u64).saturating_mul(type_size(dt))
    }
}

fn plus(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

fn unless(cond: bool, b: impl FnOnce() -> u64) -> u64 {
    if cond {
        0
    } else {
        b()
    }
}

fn only(cond: bool, b: impl FnOnce() -> u64) -> u64 {
    unless(!cond, b)
}

/// Number of peers a collective exchanges blocks with: the remote group of
/// an intercommunicator, else the communicator itself.
fn group(comm: MPI_Comm) -> i64 {
    group_of(is_inter(comm), comm)
}

/// [`group`] when whether `comm` is an intercommunicator is already known.
fn group_of(inter: bool, comm: MPI_Comm) -> i64 {
    if inter {
        remote_size(comm)
    } else {
        comm_size(comm)
    }
}

/// Role of this rank in a rooted collective.
struct Rooted {
    /// Contributes (gather/reduce) or receives (scatter) a block.
    member: bool,
    /// Is the root.
    root: bool,
    /// The communicator is an intercommunicator (known without asking
    /// when the root is `MPI_ROOT` or `MPI_PROC_NULL`, which only
    /// intercommunicators accept).
    inter: bool,
}

impl Rooted {
    /// Peers the root exchanges blocks with (asked only at the root).
    fn group(&self, comm: MPI_Comm) -> i64 {
        group_of(self.inter, comm)
    }
}

fn rooted(root: i64, comm: MPI_Comm) -> Rooted {
    if root == MPI_ROOT as i64 {
        Rooted { member: false, root: true, inter: true }
    } else if root == MPI_PROC_NULL as i64 {
        Rooted { member: false, root: false, inter: true }
    } else if is_inter(comm) {
        Rooted { member: true, root: false, inter: true }
    } else {
        Rooted { member: true, root: comm_rank(comm) == root, inter: false }
    }
}

fn weighted(counts: Counts, types: Types, n: i64) -> u64 {
    (0..n.max(0)).fold(0u64, |acc, i| acc.saturating_add(types.get(i).map(|t| bytes(counts.get(i), t)).unwrap_or(0)))
}

// ------------------------------------------------------------ point to point

pub(crate) fn p2p(count: i64, dt: MPI_Datatype, peer: i64) -> u64 {
    unless(peer == MPI_PROC_NULL as i64, || bytes(count, dt))
}

pub(crate) fn p2p_parts(partitions: i64, count: i64, dt: MPI_Datatype, peer: i64) -> u64 {
    unless(peer == MPI_PROC_NULL as i64, || bytes(partitions.max(0).saturating_mul(count), dt))
}

pub(crate) fn buffer(count: i64, dt: MPI_Datatype) -> u64 {
    bytes(count, dt)
}

pub(crate) fn sendrecv(sc: i64, sdt: MPI_Datatype, dest: i64, rc: i64, rdt: MPI_Datatype, source: i64) -> u64 {
    p2p(sc, sdt, dest).saturating_add(p2p(rc, rdt, source))
}

/// One buffer sent to `dest`, then overwritten by what comes from `source`.
pub(crate) fn sendrecv_replace(count: i64, dt: MPI_Datatype, dest: i64, source: i64) -> u64 {
    let (to, from) = (dest != MPI_PROC_NULL as i64, source != MPI_PROC_NULL as i64);
    if !to && !from {
        return 0;
    }
    let b = bytes(count, dt);
    plus(only(to, || b), only(from, || b))
}

// ------------------------------------------------------------ collectives

pub(crate) fn bcast(count: i64, dt: MPI_Datatype, root: i64, _comm: MPI_Comm) -> u64 {
    unless(root == MPI_PROC_NULL as i64, || bytes(count, dt))
}

pub(crate) fn reduce(sbuf: *mut c_void, count: i64, dt: MPI_Datatype, root: i64, comm: MPI_Comm) -> u64 {
    let r = rooted(root, comm);
    let sends = r.member && !is_in_place(sbuf);
    if !sends && !r.root {
        return 0;
    }
    let b = bytes(count, dt);
    plus(only(sends, || b), only(r.root, || b))
}

pub(crate) fn allreduce(sbuf: *mut c_void, count: i64, dt: MPI_Datatype) -> u64 {
    let b = bytes(count, dt);
    plus(unless(is_in_place(sbuf), || b), b)
}

pub(crate) fn reduce_scatter_block(sbuf: *mut c_void, rcount: i64, dt: MPI_Datatype, comm: MPI_Comm) -> u64 {
    plus(unless(is_in_place(sbuf), || bytes(rcount.saturating_mul(group(comm)), dt)), bytes(rcount, dt))
}

pub(crate) fn reduce_scatter(sbuf: *mut c_void, rcounts: Counts, dt: MPI_Datatype, comm: MPI_Comm) -> u64 {
    let n = comm_size(comm);
    plus(unless(is_in_place(sbuf), || bytes(rcounts.sum(n), dt)), bytes(rcounts.get(comm_rank(comm)), dt))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gather(
    sbuf: *mut c_void,
    sc: i64,
    sdt: MPI_Datatype,
    rc: i64,
    rdt: MPI_Datatype,
    root: i64,
    comm: MPI_Comm,
) -> u64 {
    let r = rooted(root, comm);
    plus(
        only(r.member && !is_in_place(sbuf), || bytes(sc, sdt)),
        only(r.root, || bytes(rc.saturating_mul(r.group(comm)), rdt)),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gatherv(
    sbuf: *mut c_void,
    sc: i64,
    sdt: MPI_Datatype,
    rcounts: Counts,
    rdt: MPI_Datatype,
    root: i64,
    comm: MPI_Comm,
) -> u64 {
    let r = rooted(root, comm);
    plus(
        only(r.member && !is_in_place(sbuf), || bytes(sc, sdt)),
        only(r.root, || bytes(rcounts.sum(r.group(comm)), rdt)),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn scatter(
    sc: i64,
    sdt: MPI_Datatype,
    rbuf: *mut c_void,
    rc: i64,
    rdt: MPI_Datatype,
    root: i64,
    comm: MPI_Comm,
) -> u64 {
    let r = rooted(root, comm);
    plus(
        only(r.root, || bytes(sc.saturating_mul(r.group(comm)), sdt)),
        only(r.member && !is_in_place(rbuf), || bytes(rc, rdt)),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn scatterv(
    scounts: Counts,
    sdt: MPI_Datatype,
    rbuf: *mut c_void,
    rc: i64,
    rdt: MPI_Datatype,
    root: i64,
    comm: MPI_Comm,
) -> u64 {
    let r = rooted(root, comm);
    plus(
        only(r.root, || bytes(scounts.sum(r.group(comm)), sdt)),
        only(r.member && !is_in_place(rbuf), || bytes(rc, rdt)),
    )
}

pub(crate) fn allgather(
    sbuf: *mut c_void,
    sc: i64,
    sdt: MPI_Datatype,
    rc: i64,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    plus(unless(is_in_place(sbuf), || bytes(sc, sdt)), bytes(rc.saturating_mul(group(comm)), rdt))
}

pub(crate) fn allgatherv(
    sbuf: *mut c_void,
    sc: i64,
    sdt: MPI_Datatype,
    rcounts: Counts,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    plus(unless(is_in_place(sbuf), || bytes(sc, sdt)), bytes(rcounts.sum(group(comm)), rdt))
}

pub(crate) fn alltoall(
    sbuf: *mut c_void,
    sc: i64,
    sdt: MPI_Datatype,
    rc: i64,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    let n = group(comm);
    plus(unless(is_in_place(sbuf), || bytes(sc.saturating_mul(n), sdt)), bytes(rc.saturating_mul(n), rdt))
}

pub(crate) fn alltoallv(
    sbuf: *mut c_void,
    scounts: Counts,
    sdt: MPI_Datatype,
    rcounts: Counts,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    let n = group(comm);
    plus(unless(is_in_place(sbuf), || bytes(scounts.sum(n), sdt)), bytes(rcounts.sum(n), rdt))
}

pub(crate) fn alltoallw(
    sbuf: *mut c_void,
    scounts: Counts,
    stypes: Types,
    rcounts: Counts,
    rtypes: Types,
    comm: MPI_Comm,
) -> u64 {
    let n = group(comm);
    plus(unless(is_in_place(sbuf), || weighted(scounts, stypes, n)), weighted(rcounts, rtypes, n))
}

pub(crate) fn neighbor_allgather(sc: i64, sdt: MPI_Datatype, rc: i64, rdt: MPI_Datatype, comm: MPI_Comm) -> u64 {
    let (indeg, _) = neighbors(comm);
    plus(bytes(sc, sdt), bytes(rc.saturating_mul(indeg), rdt))
}

pub(crate) fn neighbor_allgatherv(
    sc: i64,
    sdt: MPI_Datatype,
    rcounts: Counts,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    let (indeg, _) = neighbors(comm);
    plus(bytes(sc, sdt), bytes(rcounts.sum(indeg), rdt))
}

pub(crate) fn neighbor_alltoall(sc: i64, sdt: MPI_Datatype, rc: i64, rdt: MPI_Datatype, comm: MPI_Comm) -> u64 {
    let (indeg, outdeg) = neighbors(comm);
    plus(bytes(sc.saturating_mul(outdeg), sdt), bytes(rc.saturating_mul(indeg), rdt))
}

pub(crate) fn neighbor_alltoallv(
    scounts: Counts,
    sdt: MPI_Datatype,
    rcounts: Counts,
    rdt: MPI_Datatype,
    comm: MPI_Comm,
) -> u64 {
    let (indeg, outdeg) = neighbors(comm);
    plus(bytes(scounts.sum(outdeg), sdt), bytes(rcounts.sum(indeg), rdt))
}

pub(crate) fn neighbor_alltoallw(
    scounts: Counts,
    stypes: Types,
    rcounts: Counts,
    rtypes: Types,
    comm: MPI_Comm,
) -> u64 {
    let (indeg, outdeg) = neighbors(comm);
    plus(weighted(scounts, stypes, outdeg), weighted(rcounts, rtypes, indeg))
}

// ------------------------------------------------------------ one-sided

pub(crate) fn rma(count: i64, dt: MPI_Datatype, target: i64) -> u64 {
    p2p(count, dt, target)
}

pub(crate) fn get_accumulate(oc: i64, odt: MPI_Datatype, rc: i64, rdt: MPI_Datatype, target: i64) -> u64 {
    unless(target == MPI_PROC_NULL as i64, || plus(bytes(oc, odt), bytes(rc, rdt)))
}

pub(crate) fn rma_elements(n: i64, dt: MPI_Datatype, target: i64) -> u64 {
    p2p(n, dt, target)
}
