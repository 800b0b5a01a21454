//! Which Fortran symbols are wrapped, under which series, twin, arity and byte rule.

use super::*;

const HEADER: &str = "typedef int MPI_Datatype;\ntypedef int MPI_Comm;\ntypedef long MPI_Count;\n\
    typedef int MPI_Info;\ntypedef long MPI_Aint;\ntypedef int MPI_Op;\n\
    int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
    int PMPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
    int MPI_Send_c(const void *buf, MPI_Count count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
    int PMPI_Send_c(const void *buf, MPI_Count count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
    int MPI_Allreduce(const void *s, void *r, int count, MPI_Datatype d, MPI_Op op, MPI_Comm comm);\n\
    int PMPI_Allreduce(const void *s, void *r, int count, MPI_Datatype d, MPI_Op op, MPI_Comm comm);\n\
    int MPI_Barrier(MPI_Comm comm);\nint PMPI_Barrier(MPI_Comm comm);\n\
    int MPI_Init(int *argc, char ***argv);\nint PMPI_Init(int *argc, char ***argv);\n\
    int MPI_Get_processor_name(char *name, int *resultlen);\nint PMPI_Get_processor_name(char *name, int *resultlen);\n\
    int MPI_Alloc_mem(MPI_Aint size, MPI_Info info, void *baseptr);\n\
    int PMPI_Alloc_mem(MPI_Aint size, MPI_Info info, void *baseptr);\n\
    int MPIX_Comm_agree(MPI_Comm comm, int *flag);\nint PMPIX_Comm_agree(MPI_Comm comm, int *flag);\n\
    int MPI_Pcontrol(const int level, ...);\n\
    double MPI_Wtime(void);\ndouble PMPI_Wtime(void);\n";

fn nm(functions: &[&str], objects: &[&str]) -> String {
    let mut out = String::new();
    for f in functions {
        out.push_str(&format!("0000000000050b20 W {f}\n"));
    }
    for o in objects {
        out.push_str(&format!("00000000000ee200 B {o}\n"));
    }
    out
}

fn select(libs: &[Library]) -> Fortran {
    let h = Header::parse(HEADER);
    let api = Api::select(&h);
    Fortran::select(libs, &api, &h).unwrap()
}

fn entry<'a>(f: &'a Fortran, name: &str) -> &'a Entry {
    f.entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} not wrapped: {f:#?}"))
}

fn skipped<'a>(f: &'a Fortran, name: &str) -> &'a str {
    f.skipped.iter().find(|(n, _)| n == name).map(|(_, w)| w.as_str()).unwrap_or_else(|| panic!("{name} not skipped"))
}

#[test]
fn nm_output_gives_functions_and_objects() {
    let lib = Library::from_nm(
        "libx",
        "0000000000050b20  w mpi_x\n0000000000050b20 T mpi_send_\n0000000000050b20 W pmpi_send_\n\
         00000000000ee200 B MPI_F_ARGV_NULL\n                 U PMPI_Send\n",
    );
    assert_eq!(lib.functions.iter().map(String::as_str).collect::<Vec<_>>(), ["mpi_send_", "pmpi_send_"]);
    assert_eq!(lib.objects.iter().map(String::as_str).collect::<Vec<_>>(), ["MPI_F_ARGV_NULL"]);
    assert!(lib.exports_mpi());
    assert!(!Library::from_nm("libm", "0000000000001000 T sin\n").exports_mpi());
}

#[test]
fn open_mpi_forms_count_under_the_c_series_and_forward_to_their_p_twin() {
    let mpifh = Library::from_nm(
        "libmpi_mpifh",
        &nm(
            &[
                "mpi_send_",
                "pmpi_send_",
                "mpi_send__",
                "pmpi_send__",
                "mpi_send",
                "pmpi_send",
                "MPI_SEND",
                "PMPI_SEND",
                "MPI_Send_f",
                "PMPI_Send_f",
                "MPI_Send_f08",
                "PMPI_Send_f08",
                "ompi_send_f",
                "mpi_allreduce_",
                "pmpi_allreduce_",
                "mpi_get_processor_name_",
                "pmpi_get_processor_name_",
                "mpi_init_",
                "pmpi_init_",
                "MPI_ADDRESS",
                "PMPI_ADDRESS",
                "mpi_address_",
                "pmpi_address_",
                "mpi_alloc_mem_cptr_",
                "pmpi_alloc_mem_cptr_",
                "MPI_ALLOC_MEM_CPTR",
                "mpi_wtime_",
                "pmpi_wtime_",
                "mpi_sizeof_real4_",
                "pmpi_sizeof_real4_",
                "mpi_pcontrol_",
                "pmpi_pcontrol_",
                "mpi_lonely_",
                "mpi_barrier_",
            ],
            &[],
        ),
    );
    let f08 = Library::from_nm(
        "libmpi_usempif08",
        &nm(&["mpi_send_f08_", "pmpi_send_f08_", "mpi_barrier_f08_", "pmpi_barrier_f08_"], &["mpi_fortran_in_place_"]),
    );
    let f = select(&[mpifh, f08]);
    for (name, twin) in [
        ("mpi_send_", "pmpi_send_"),
        ("mpi_send__", "pmpi_send__"),
        ("mpi_send", "pmpi_send"),
        ("MPI_SEND", "PMPI_SEND"),
        ("MPI_Send_f", "PMPI_Send_f"),
        ("MPI_Send_f08", "PMPI_Send_f08"),
        ("mpi_send_f08_", "pmpi_send_f08_"),
    ] {
        let e = entry(&f, name);
        assert_eq!((e.twin.as_str(), e.series.as_str(), e.arity, e.ierr), (twin, "MPI_Send", 7, Some(6)), "{name}");
    }
    let e = entry(&f, "mpi_send_");
    assert_eq!(e.bytes.as_deref(), Some("p2p(fint(a1), ftype(a2), fint(a3))"));
    assert!(!e.f08);
    assert_eq!(entry(&f, "mpi_send_f08_").bytes.as_deref(), Some("p2p(fint(a1), ftype(a2), fint(a3))"));
    assert!(entry(&f, "mpi_send_f08_").f08);
    assert_eq!(entry(&f, "mpi_send_f08_").library, "libmpi_usempif08");
    assert_eq!(entry(&f, "mpi_allreduce_").bytes.as_deref(), Some("allreduce(fbuf_h(a0), fint(a2), ftype(a3))"));
    // One hidden length per CHARACTER argument, after ierror.
    let e = entry(&f, "mpi_get_processor_name_");
    assert_eq!((e.arity, e.ierr), (4, Some(2)));
    // MPI_INIT(IERROR): argc and argv are C-only.
    let e = entry(&f, "mpi_init_");
    assert_eq!((e.series.as_str(), e.arity, e.ierr, e.bytes.as_deref()), ("MPI_Init", 1, Some(0), None));
    // An MPI-1 routine removed from C: its own series, every argument forwarded.
    let e = entry(&f, "mpi_address_");
    assert_eq!((e.series.as_str(), e.arity, e.ierr), ("MPI_Address", MAX_ARITY, None));
    assert_eq!(entry(&f, "MPI_ADDRESS").series, "MPI_Address");
    assert_eq!(f.extra_series, ["MPI_Address"]);
    // `_cptr`: the base routine's series and arguments.
    let e = entry(&f, "mpi_alloc_mem_cptr_");
    assert_eq!((e.series.as_str(), e.arity), ("MPI_Alloc_mem", 4));
    assert_eq!(skipped(&f, "mpi_wtime_"), "timer used inside measured regions; wrapping it would perturb them");
    assert_eq!(skipped(&f, "mpi_sizeof_real4_"), "MPI_SIZEOF: a compile-time size query, no MPI call");
    assert_eq!(
        skipped(&f, "mpi_pcontrol_"),
        "as its C function: variadic (Rust cannot define C variadic functions on stable)"
    );
    assert_eq!(skipped(&f, "MPI_ALLOC_MEM_CPTR"), "no profiling twin exported");
    assert_eq!(skipped(&f, "mpi_lonely_"), "no C function or Fortran routine of this name");
    assert_eq!(skipped(&f, "mpi_barrier_"), "no profiling twin exported");
    // Twins and Open MPI's internal routines are never entry points.
    assert!(f.entries.iter().all(|e| !e.name.starts_with('p') && !e.name.starts_with("ompi")));
    assert!(f.skipped.iter().all(|(n, _)| !n.starts_with('p') && !n.starts_with("ompi")));
    assert_eq!(
        f.in_place,
        [Some(("mpi_fortran_in_place_".to_owned(), false)), Some(("mpi_fortran_in_place_".to_owned(), false))]
    );
    assert_eq!(f.libraries, ["libmpi_mpifh", "libmpi_usempif08"]);
    assert_eq!(
        f.report("openmpi"),
        "tau_pmpi: wrapped 14 Fortran entry points of openmpi: 11 for mpif.h/use mpi, 3 for use mpi_f08 (8 with a \
         byte-size rule; from libmpi_mpifh libmpi_usempif08), 6 excluded"
    );
}

#[test]
fn mpich_f08_forms_use_pmpir_twins_descriptors_and_large_counts() {
    let lib = Library::from_nm(
        "libmpichfort",
        &nm(
            &[
                "mpi_send_",
                "pmpi_send_",
                "mpi_send_f08ts_",
                "pmpir_send_f08ts_",
                "mpi_send_f08ts_large_",
                "pmpir_send_f08ts_large_",
                "mpi_allreduce_f08ts_",
                "pmpir_allreduce_f08ts_",
                "mpi_allreduce_",
                "pmpi_allreduce_",
                "mpi_barrier_f08_",
                "pmpir_barrier_f08_",
                "mpix_comm_agree_f08_",
                "pmpixr_comm_agree_f08_",
                "MPIX_COMM_AGREE",
                "PMPIX_COMM_AGREE",
                "mpi_pcontrol_",
                "pmpi_pcontrol_",
                "MPI_PCONTROL",
                "PMPI_PCONTROL",
                "mpi_comm_dup_fn_",
                "pmpi_comm_dup_fn_",
                "MPI_COMM_DUP_FN",
            ],
            &["MPIR_F_MPI_IN_PLACE", "MPIR_F08_MPI_IN_PLACE", "MPI_F_ARGV_NULL"],
        ),
    );
    let f = select(&[lib]);
    assert_eq!(entry(&f, "mpi_send_f08ts_").twin, "pmpir_send_f08ts_");
    let e = entry(&f, "mpi_send_f08ts_large_");
    assert_eq!((e.series.as_str(), e.twin.as_str()), ("MPI_Send_c", "pmpir_send_f08ts_large_"));
    assert_eq!(e.bytes.as_deref(), Some("p2p(fcount(a1), ftype(a2), fint(a3))"));
    assert_eq!(
        entry(&f, "mpi_allreduce_f08ts_").bytes.as_deref(),
        Some("allreduce(fbuf_ts(a0), fint(a2), ftype(a3))"),
        "descriptor buffers"
    );
    assert_eq!(entry(&f, "mpi_allreduce_").bytes.as_deref(), Some("allreduce(fbuf_h(a0), fint(a2), ftype(a3))"));
    let e = entry(&f, "mpi_barrier_f08_");
    assert_eq!((e.series.as_str(), e.twin.as_str(), e.arity), ("MPI_Barrier", "pmpir_barrier_f08_", 2));
    let e = entry(&f, "mpix_comm_agree_f08_");
    assert_eq!((e.series.as_str(), e.twin.as_str(), e.arity), ("MPIX_Comm_agree", "pmpixr_comm_agree_f08_", 3));
    assert_eq!(entry(&f, "MPIX_COMM_AGREE").twin, "PMPIX_COMM_AGREE");
    // The C function is variadic, hence not wrapped: neither is Fortran's.
    assert_eq!(
        skipped(&f, "mpi_pcontrol_"),
        "as its C function: variadic (Rust cannot define C variadic functions on stable)"
    );
    assert_eq!(skipped(&f, "mpi_comm_dup_fn_"), "predefined callback that MPI calls, not a call into MPI");
    assert!(f.extra_series.is_empty(), "{:?}", f.extra_series);
    assert_eq!(
        f.in_place,
        [Some(("MPIR_F_MPI_IN_PLACE".to_owned(), true)), Some(("MPIR_F08_MPI_IN_PLACE".to_owned(), false))]
    );
}

#[test]
fn canonical_names_are_spelled_as_mpi_does() {
    assert_eq!(canonical("mpi_type_hvector"), "MPI_Type_hvector");
    assert_eq!(canonical("mpix_comm_agree"), "MPIX_Comm_agree");
    assert_eq!(canonical("mpi_address"), "MPI_Address");
}

#[test]
fn without_fortran_libraries_nothing_is_wrapped() {
    let f = select(&[]);
    assert!(f.entries.is_empty() && f.skipped.is_empty());
    assert_eq!(f.in_place, [None, None]);
}
