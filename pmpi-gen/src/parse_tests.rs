//! The header parser on small snippets of what `cc -E -P` makes of `mpi.h`.

use super::*;

fn protos(h: &Header) -> Vec<&Proto> {
    h.declared
        .iter()
        .filter_map(|d| match d {
            Declared::Proto(p) => Some(p),
            Declared::Skip(..) => None,
        })
        .collect()
}

fn proto<'a>(h: &'a Header, name: &str) -> &'a Proto {
    protos(h).into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} not parsed: {:#?}", h.declared))
}

fn rust_types(p: &Proto) -> Vec<&str> {
    p.params.iter().map(|q| q.rust.as_str()).collect()
}

fn skip_reason<'a>(h: &'a Header, name: &str) -> &'a str {
    h.declared
        .iter()
        .find_map(|d| match d {
            Declared::Skip(n, why) if n == name => Some(why.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} not skipped: {:#?}", h.declared))
}

#[test]
fn tokens_skip_line_markers_and_keep_literals_and_ellipses() {
    let t = tokenize("# 1 \"mpi.h\"\nint f(const char *s, ...); x = \"a\\\"b\";");
    assert_eq!(t, ["int", "f", "(", "const", "char", "*", "s", ",", "...", ")", ";", "x", "=", "\"a\\\"b\"", ";"]);
}

#[test]
fn attributes_asm_labels_and_restrict_are_dropped() {
    let t = strip_noise(tokenize(
        "int MPI_X(void *__restrict p) __attribute__((visibility(\"default\"), nonnull(1))) __asm__(\"x\");",
    ));
    assert_eq!(t, ["int", "MPI_X", "(", "void", "*", "p", ")", ";"]);
}

#[test]
fn function_definitions_are_dropped_and_typedef_bodies_kept() {
    let d = declarations(&tokenize("static inline int MPI_Z(int a) { return a; } typedef struct { int x; } T; int y;"));
    let d: Vec<String> = d.iter().map(|d| d.join(" ")).collect();
    assert_eq!(d, ["typedef struct { int x ; } T", "int y"]);
}

#[test]
fn pointer_handles_open_mpi_style() {
    let h = Header::parse(
        "typedef struct ompi_communicator_t *MPI_Comm;\n\
         typedef struct ompi_datatype_t *MPI_Datatype;\n\
         int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm) \
           __attribute__((visibility(\"default\")));\n\
         int PMPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);",
    );
    let p = proto(&h, "MPI_Send");
    assert_eq!(p.ret, "c_int");
    assert!(p.returns_int());
    assert_eq!(rust_types(p), ["*mut c_void", "c_int", "MPI_Datatype", "c_int", "c_int", "MPI_Comm"]);
    assert_eq!(p.params[0].c, "const void* buf");
    assert_eq!(p.params[0].pointee.as_deref(), Some("void"));
    assert_eq!(p.params[2].pointee, None);
    assert_eq!(h.aliases.get("MPI_Comm").map(String::as_str), Some("*mut c_void"));
    assert_eq!(h.aliases.get("MPI_Datatype").map(String::as_str), Some("*mut c_void"));
    assert!(h.pmpi.contains("PMPI_Send"));
    assert_eq!(protos(&h).len(), 1, "PMPI_* prototypes are twins, not functions to wrap");
}

#[test]
fn int_handles_mpich_style() {
    let h = Header::parse(
        "typedef int MPI_Comm;\ntypedef int MPI_Datatype;\ntypedef long MPI_Aint;\n\
         int MPI_Comm_rank(MPI_Comm comm, int *rank);\n\
         MPI_Aint MPI_Aint_add(MPI_Aint base, MPI_Aint disp);",
    );
    let p = proto(&h, "MPI_Comm_rank");
    assert_eq!(rust_types(p), ["MPI_Comm", "*mut c_void"]);
    assert_eq!(p.params[1].pointee.as_deref(), Some("int"));
    assert_eq!(h.aliases.get("MPI_Comm").map(String::as_str), Some("c_int"));
    let add = proto(&h, "MPI_Aint_add");
    assert_eq!(add.ret, "MPI_Aint");
    assert!(!add.returns_int());
    assert_eq!(h.aliases.get("MPI_Aint").map(String::as_str), Some("c_long"));
}

#[test]
fn function_pointer_parameters_become_pointers() {
    let h = Header::parse(
        "typedef int MPI_Comm;\n\
         typedef int (MPI_Comm_copy_attr_function)(MPI_Comm, int, void *, void *, void *, int *);\n\
         typedef void (*MPI_Fptr)(void);\n\
         typedef void (MPI_User_function)(void *, void *, int *, int *);\n\
         int MPI_Comm_create_keyval(MPI_Comm_copy_attr_function *copy_fn, int *keyval, void *extra);\n\
         int MPI_Hook(void (*fn)(int), MPI_Fptr f, MPI_User_function user);",
    );
    let k = proto(&h, "MPI_Comm_create_keyval");
    assert_eq!(rust_types(k), ["*mut c_void", "*mut c_void", "*mut c_void"]);
    assert_eq!(k.params[0].pointee.as_deref(), Some("MPI_Comm_copy_attr_function"));
    let hook = proto(&h, "MPI_Hook");
    // A function-pointer declarator, a typedef of a function pointer (kept
    // as an alias) and a parameter of function type (decays, no alias).
    assert_eq!(rust_types(hook), ["*mut c_void", "MPI_Fptr", "*mut c_void"]);
    assert_eq!(h.aliases.get("MPI_Fptr").map(String::as_str), Some("*mut c_void"));
    assert!(!h.aliases.contains_key("MPI_User_function"));
    assert!(!h.aliases.contains_key("MPI_Comm_copy_attr_function"));
}

#[test]
fn large_count_variants_keep_mpi_count() {
    let h = Header::parse(
        "typedef long long MPI_Count;\ntypedef int MPI_Datatype;\ntypedef int MPI_Comm;\n\
         int MPI_Send_c(const void *buf, MPI_Count count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);\n\
         int MPI_Alltoallv_c(const void *sendbuf, const MPI_Count sendcounts[], const MPI_Count sdispls[], \
           MPI_Datatype sendtype, void *recvbuf, const MPI_Count recvcounts[], const MPI_Count rdispls[], \
           MPI_Datatype recvtype, MPI_Comm comm);",
    );
    let s = proto(&h, "MPI_Send_c");
    assert_eq!(s.params[1].rust, "MPI_Count");
    assert_eq!(h.aliases.get("MPI_Count").map(String::as_str), Some("c_longlong"));
    let a = proto(&h, "MPI_Alltoallv_c");
    assert_eq!(a.params[1].pointee.as_deref(), Some("MPI_Count"));
    assert_eq!(a.params[1].c, "const MPI_Count sendcounts[]");
    assert_eq!(h.resolve("MPI_Count"), Some(CType::Prim("c_longlong")));
}

#[test]
fn const_arrays_have_their_element_type() {
    let h = Header::parse(
        "typedef int MPI_Datatype;\ntypedef int MPI_Comm;\ntypedef int MPI_Group;\n\
         int MPI_Alltoallw(const void *sendbuf, const int sendcounts[], const int sdispls[], \
           const MPI_Datatype sendtypes[], void *recvbuf, const int recvcounts[], const int rdispls[], \
           const MPI_Datatype recvtypes[], MPI_Comm comm);\n\
         int MPI_Group_range_incl(MPI_Group group, int n, int ranges[][3], MPI_Group *newgroup);\n\
         int MPI_Unnamed(const int[], int *);",
    );
    let w = proto(&h, "MPI_Alltoallw");
    let pointees: Vec<Option<&str>> = w.params.iter().map(|p| p.pointee.as_deref()).collect();
    assert_eq!(
        pointees,
        [
            Some("void"),
            Some("int"),
            Some("int"),
            Some("MPI_Datatype"),
            Some("void"),
            Some("int"),
            Some("int"),
            Some("MPI_Datatype"),
            None
        ]
    );
    assert!(w.params[..8].iter().all(|p| p.rust == "*mut c_void"));
    let r = proto(&h, "MPI_Group_range_incl");
    assert_eq!(r.params[2].pointee.as_deref(), Some("int"));
    assert_eq!(r.params[2].c, "int ranges[][3]");
    let u = proto(&h, "MPI_Unnamed");
    assert_eq!(u.params[0].pointee.as_deref(), Some("int"), "an unnamed array keeps its only type word");
}

#[test]
fn scalars_enums_and_return_types() {
    let h = Header::parse(
        "typedef int MPI_Fint;\ntypedef int MPI_Comm;\nenum mode { A, B };\n\
         double MPI_Wtime(void);\n\
         MPI_Fint MPI_Comm_c2f(MPI_Comm comm);\n\
         char *MPI_Name(unsigned long long n, short s, unsigned char c, enum mode m, _Bool b, float f);\n\
         void MPI_Nothing(void);",
    );
    assert_eq!(proto(&h, "MPI_Wtime").ret, "f64");
    assert!(proto(&h, "MPI_Wtime").params.is_empty());
    assert_eq!(proto(&h, "MPI_Comm_c2f").ret, "MPI_Fint");
    let n = proto(&h, "MPI_Name");
    assert_eq!(n.ret, "*mut c_void");
    assert_eq!(rust_types(n), ["c_ulonglong", "c_short", "c_uchar", "c_int", "bool", "f32"]);
    assert_eq!(proto(&h, "MPI_Nothing").ret, "()");
}

#[test]
fn what_cannot_be_forwarded_is_skipped_with_a_reason() {
    let h = Header::parse(
        "typedef struct { int a; } S;\n\
         int MPI_Pcontrol(const int level, ...);\n\
         int MPI_By_value(S s);\n\
         long double MPI_Long(void);\n\
         int MPI_Unknown(mystery_t x);\n\
         int PMPI_Pcontrol(const int level, ...);\n\
         int not_mpi(int);",
    );
    assert!(skip_reason(&h, "MPI_Pcontrol").starts_with("variadic"));
    assert_eq!(skip_reason(&h, "MPI_By_value"), "struct passed by value");
    assert_eq!(skip_reason(&h, "MPI_Long"), "return type not understood");
    assert_eq!(skip_reason(&h, "MPI_Unknown"), "parameter type not understood");
    assert_eq!(h.declared.len(), 4, "PMPI_* and other functions are not listed: {:#?}", h.declared);
    assert!(h.pmpi.is_empty(), "a PMPI prototype that cannot be parsed is no twin");
}
