//! Generates one PMPI wrapper per `MPI_*` function declared by the installed `mpi.h`.
//!
//! MPI is found through `$MPICC` (else `mpicc`); its `-show`/`--showme`
//! output names the real C compiler and the include directories. The header
//! is preprocessed with that compiler, every prototype and typedef is parsed
//! from the result, and `$OUT_DIR/wrappers.rs` receives, per function, a
//! Rust definition with the implementation's exact C signature (Open MPI
//! handles are pointers, MPICH handles are ints). A tiny C probe, compiled
//! and run at build time, provides the constants the size rules need
//! (`MPI_IN_PLACE`, `MPI_ROOT`, ...) and the sizes of every MPI scalar type,
//! which the generated code checks at compile time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Functions deliberately not wrapped, and why (documented in the crate docs).
fn excluded(name: &str) -> Option<&'static str> {
    const CONVERTERS: [&str; 6] = ["_c2f", "_f2c", "_c2f08", "_f082c", "_f082f", "_f2f08"];
    if CONVERTERS.iter().any(|s| name.ends_with(s)) {
        return Some("handle/status converter between language bindings, no communication");
    }
    match name {
        "MPI_Wtime" | "MPI_Wtick" => Some("timer used inside measured regions; wrapping it would perturb them"),
        _ => None,
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=MPICC");
    println!("cargo:rerun-if-changed=build.rs");
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".to_owned());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    match generate(&mpicc, &out) {
        Ok(report) => println!("cargo:warning={report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// The C compiler behind an MPI wrapper compiler and its `-I` flags.
struct Toolchain {
    cc: String,
    cflags: Vec<String>,
}

fn not_found(mpicc: &str, why: &str) -> String {
    format!("MPI not found: install libopenmpi-dev or libmpich-dev, or set MPICC ({mpicc}: {why})")
}

fn toolchain(mpicc: &str) -> Result<Toolchain, String> {
    let mut last = String::new();
    for flag in ["-show", "--showme"] {
        match Command::new(mpicc).arg(flag).output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let mut words = text.split_whitespace();
                let Some(cc) = words.next() else { continue };
                let cflags = words.filter(|w| w.starts_with("-I") || w.starts_with("-D")).map(str::to_owned).collect();
                return Ok(Toolchain { cc: cc.to_owned(), cflags });
            }
            Ok(o) => last = format!("`{mpicc} {flag}` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => return Err(not_found(mpicc, &e.to_string())),
        }
    }
    Err(not_found(mpicc, &last))
}

fn preprocess(tc: &Toolchain, out: &Path) -> Result<String, String> {
    let src = out.join("mpi_header.c");
    std::fs::write(&src, "#include <mpi.h>\n").map_err(|e| e.to_string())?;
    let o = Command::new(&tc.cc)
        .args(&tc.cflags)
        .args(["-E", "-P"])
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tc.cc))?;
    if !o.status.success() {
        return Err(format!("preprocessing mpi.h failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

// ---------------------------------------------------------------- C parsing

fn tokenize(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' {
            // Line markers or pragmas left by the preprocessor.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(text[s..i].to_owned());
        } else if c == b'"' || c == b'\'' {
            let s = i;
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(text[s..i.min(b.len())].to_owned());
        } else if text[i..].starts_with("...") {
            out.push("...".to_owned());
            i += 3;
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

/// Drops `__attribute__((...))`, `__asm__(...)` and qualifiers that do not
/// change the ABI.
fn strip_noise(tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        if matches!(t, "__attribute__" | "__asm__" | "__asm" | "asm" | "__declspec") {
            i += 1;
            if tokens.get(i).map(String::as_str) == Some("(") {
                let mut depth = 0;
                while i < tokens.len() {
                    match tokens[i].as_str() {
                        "(" => depth += 1,
                        ")" => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            continue;
        }
        if !matches!(t, "__extension__" | "__restrict" | "__restrict__" | "restrict" | "__inline" | "__inline__") {
            out.push(tokens[i].clone());
        }
        i += 1;
    }
    out
}

/// Top-level declarations (split at `;` outside braces and parentheses);
/// function definitions (a body after a parameter list) are dropped.
fn declarations(tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let (mut braces, mut parens) = (0i32, 0i32);
    for t in tokens {
        match t.as_str() {
            "{" => braces += 1,
            "}" => {
                braces -= 1;
                if braces == 0 && parens == 0 && cur.first().is_some_and(|f| f != "typedef") {
                    // End of a function body: `... ) { ... }` has no `;`.
                    let open = cur.iter().position(|x| x == "{");
                    if open.is_some_and(|o| o > 0 && cur[o - 1] == ")") {
                        cur.clear();
                        continue;
                    }
                }
            }
            "(" => parens += 1,
            ")" => parens -= 1,
            ";" if braces == 0 && parens == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(t.clone());
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

const TYPE_WORDS: [&str; 12] =
    ["void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "_Bool", "const", "volatile"];

/// What a C type is, as far as the calling convention is concerned.
#[derive(Clone, Debug, PartialEq)]
enum CType {
    Void,
    /// A scalar with its Rust spelling (`c_int`, `f64`, ...).
    Prim(&'static str),
    Ptr,
    /// A struct or union by value: cannot be forwarded safely.
    Aggregate,
    /// A function type (only ever used behind a pointer).
    Func,
}

fn prim_of(words: &[&str]) -> Option<CType> {
    let has = |w: &str| words.contains(&w);
    let longs = words.iter().filter(|w| **w == "long").count();
    let unsigned = has("unsigned");
    Some(if has("void") {
        CType::Void
    } else if has("double") {
        if longs > 0 {
            return None;
        }
        CType::Prim("f64")
    } else if has("float") {
        CType::Prim("f32")
    } else if has("_Bool") {
        CType::Prim("bool")
    } else if has("char") {
        CType::Prim(if unsigned {
            "c_uchar"
        } else if has("signed") {
            "c_schar"
        } else {
            "c_char"
        })
    } else if has("short") {
        CType::Prim(if unsigned { "c_ushort" } else { "c_short" })
    } else if longs >= 2 {
        CType::Prim(if unsigned { "c_ulonglong" } else { "c_longlong" })
    } else if longs == 1 {
        CType::Prim(if unsigned { "c_ulong" } else { "c_long" })
    } else if has("int") || has("signed") || unsigned {
        CType::Prim(if unsigned { "c_uint" } else { "c_int" })
    } else {
        return None;
    })
}

struct Typedefs(HashMap<String, CType>);

impl Typedefs {
    /// Classifies type tokens (no declarator name, no pointer).
    fn resolve(&self, toks: &[&str]) -> Option<CType> {
        let words: Vec<&str> =
            toks.iter().copied().filter(|t| !matches!(*t, "const" | "volatile" | "register")).collect();
        match words.first().copied() {
            Some("struct" | "union") => return Some(CType::Aggregate),
            Some("enum") => return Some(CType::Prim("c_int")),
            _ => {}
        }
        if words.len() == 1 && !TYPE_WORDS.contains(&words[0]) {
            return self.0.get(words[0]).cloned();
        }
        prim_of(&words)
    }

    fn add(&mut self, decl: &[String]) {
        let toks: Vec<&str> = decl[1..].iter().map(String::as_str).collect();
        if toks.is_empty() {
            return;
        }
        // Drop a struct/union/enum body: only its tag kind matters here.
        let mut flat: Vec<&str> = Vec::new();
        let mut depth = 0;
        for t in &toks {
            match *t {
                "{" => depth += 1,
                "}" => depth -= 1,
                _ if depth == 0 => flat.push(t),
                _ => {}
            }
        }
        if let Some(open) = flat.iter().position(|t| *t == "(") {
            // Function type `R (NAME)(...)` or function pointer `R (*NAME)(...)`.
            let inner: Vec<&str> = flat[open + 1..].iter().copied().take_while(|t| *t != ")").collect();
            if let Some(name) = inner.iter().rev().find(|t| is_ident(t)) {
                let kind = if inner.contains(&"*") { CType::Ptr } else { CType::Func };
                self.0.insert((*name).to_owned(), kind);
            }
            return;
        }
        let Some(ni) = flat.iter().rposition(|t| is_ident(t)) else { return };
        if flat[ni + 1..].contains(&"[") {
            self.0.insert(flat[ni].to_owned(), CType::Aggregate);
            return;
        }
        let target = &flat[..ni];
        let kind = if target.contains(&"*") { Some(CType::Ptr) } else { self.resolve(target) };
        if let Some(k) = kind {
            self.0.insert(flat[ni].to_owned(), k);
        }
    }
}

/// One parameter of a prototype.
#[derive(Debug)]
struct Param {
    /// C spelling, for the generated documentation.
    c: String,
    /// Rust type in the wrapper's signature.
    rust: String,
    /// Element type of a pointer parameter (`int`, `MPI_Count`, ...): the
    /// last type word before the first `*` or `[`.
    pointee: Option<String>,
}

#[derive(Debug)]
struct Proto {
    name: String,
    ret: String,
    ret_is_int: bool,
    params: Vec<Param>,
}

enum Parsed {
    Proto(Proto),
    Skip(String, String),
}

fn parse_proto(decl: &[String], tds: &Typedefs, aliases: &mut BTreeMap<String, String>) -> Option<Parsed> {
    let toks: Vec<&str> =
        decl.iter().map(String::as_str).filter(|t| !matches!(*t, "extern" | "static" | "inline")).collect();
    let open = toks.iter().position(|t| *t == "(")?;
    if open == 0 || toks.last() != Some(&")") {
        return None;
    }
    let name = toks[open - 1];
    if !name.starts_with("MPI_") && !name.starts_with("PMPI_") {
        return None;
    }
    let ret_toks = &toks[..open - 1];
    if ret_toks.is_empty() || ret_toks.contains(&"(") {
        return None;
    }
    let skip = |why: &str| Some(Parsed::Skip(name.to_owned(), why.to_owned()));
    let ret = if ret_toks.contains(&"*") {
        "*mut c_void".to_owned()
    } else {
        match rust_type(ret_toks, tds, aliases) {
            Some(t) => t,
            None => return skip("return type not understood"),
        }
    };
    let ret_is_int = ret == "c_int";
    // Parameters: split the outer parentheses at top-level commas.
    let inner = &toks[open + 1..toks.len() - 1];
    let mut params = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut depth = 0;
    let mut pieces = Vec::new();
    for t in inner {
        match *t {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "," if depth == 0 => {
                pieces.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(t);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    if pieces.len() == 1 && pieces[0] == ["void"] {
        pieces.clear();
    }
    for p in pieces {
        if p == ["..."] {
            return skip("variadic (Rust cannot define C variadic functions on stable)");
        }
        let c = p.join(" ").replace(" [", "[").replace("[ ", "[").replace(" ]", "]").replace(" *", "*");
        let indirect = p.iter().any(|t| matches!(*t, "*" | "[" | "("));
        if indirect {
            // `int *counts` or `const int counts[]`: the element type is the
            // last type word before the first `*`, `[` or `(`, not the name.
            let stop = p.iter().position(|t| matches!(*t, "*" | "[" | "(")).unwrap_or(p.len());
            let mut words: Vec<&str> =
                p[..stop].iter().copied().filter(|t| is_ident(t) && !matches!(*t, "const" | "volatile")).collect();
            if p.get(stop) == Some(&"[") && words.len() > 1 {
                words.pop();
            }
            let pointee = words.last().map(|s| (*s).to_owned());
            params.push(Param { c, rust: "*mut c_void".to_owned(), pointee });
            continue;
        }
        // Scalar: drop the declarator name when there is one.
        let mut ty: Vec<&str> = p.clone();
        if ty.len() > 1 {
            let last = ty[ty.len() - 1];
            if is_ident(last) && !TYPE_WORDS.contains(&last) && !tds.0.contains_key(last) {
                ty.pop();
            }
        }
        match rust_type(&ty, tds, aliases) {
            Some(t) => params.push(Param { c, rust: t, pointee: None }),
            None => return skip("parameter type not understood"),
        }
    }
    if params.iter().any(|p| p.rust == "!") {
        return skip("struct passed by value");
    }
    Some(Parsed::Proto(Proto { name: name.to_owned(), ret, ret_is_int, params }))
}

/// Rust spelling of a scalar C type; MPI typedefs keep their name through
/// an alias so the generated code reads like the C API. `!` marks a struct
/// by value.
fn rust_type(toks: &[&str], tds: &Typedefs, aliases: &mut BTreeMap<String, String>) -> Option<String> {
    let words: Vec<&str> = toks.iter().copied().filter(|t| !matches!(*t, "const" | "volatile")).collect();
    let kind = tds.resolve(&words)?;
    if kind == CType::Func {
        // A parameter of function type decays to a function pointer; no
        // alias, since the C size of a function type means nothing.
        return Some("*mut c_void".to_owned());
    }
    let base = match kind {
        CType::Void => "()".to_owned(),
        CType::Prim(p) => p.to_owned(),
        CType::Ptr | CType::Func => "*mut c_void".to_owned(),
        CType::Aggregate => "!".to_owned(),
    };
    if base != "!"
        && base != "()"
        && words.len() == 1
        && (words[0].starts_with("MPI_") || words[0].starts_with("MPIX_"))
    {
        aliases.insert(words[0].to_owned(), base);
        return Some(words[0].to_owned());
    }
    Some(base)
}

// ------------------------------------------------------------- size rules

/// How a function's byte count is computed: a call into `crate::sizes`
/// with argument placeholders (`$N`: argument N as a scalar, `@N`: argument
/// N as a count array, `%N`: argument N as a datatype array).
fn size_rule(base: &str) -> Option<&'static str> {
    let in_family = |names: &[&str]| names.contains(&base);
    Some(
        if in_family(&[
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
        ]) {
            "p2p($1, $2, $3)"
        } else if in_family(&["Psend_init", "Precv_init"]) {
            "p2p_parts($1, $2, $3, $4)"
        } else if in_family(&["Mrecv", "Imrecv"]) {
            "buffer($1, $2)"
        } else if in_family(&["Sendrecv", "Isendrecv"]) {
            "sendrecv($1, $2, $3, $6, $7, $8)"
        } else if in_family(&["Sendrecv_replace", "Isendrecv_replace"]) {
            "sendrecv_replace($1, $2, $3, $5)"
        } else if in_family(&["Bcast", "Ibcast", "Bcast_init"]) {
            "bcast($1, $2, $3, $4)"
        } else if in_family(&["Reduce", "Ireduce", "Reduce_init"]) {
            "reduce($0, $2, $3, $5, $6)"
        } else if in_family(&[
            "Allreduce",
            "Iallreduce",
            "Allreduce_init",
            "Scan",
            "Iscan",
            "Scan_init",
            "Exscan",
            "Iexscan",
            "Exscan_init",
        ]) {
            "allreduce($0, $2, $3)"
        } else if in_family(&["Reduce_scatter_block", "Ireduce_scatter_block", "Reduce_scatter_block_init"]) {
            "reduce_scatter_block($0, $2, $3, $5)"
        } else if in_family(&["Reduce_scatter", "Ireduce_scatter", "Reduce_scatter_init"]) {
            "reduce_scatter($0, @2, $3, $5)"
        } else if in_family(&["Gather", "Igather", "Gather_init"]) {
            "gather($0, $1, $2, $4, $5, $6, $7)"
        } else if in_family(&["Gatherv", "Igatherv", "Gatherv_init"]) {
            "gatherv($0, $1, $2, @4, $6, $7, $8)"
        } else if in_family(&["Scatter", "Iscatter", "Scatter_init"]) {
            "scatter($1, $2, $3, $4, $5, $6, $7)"
        } else if in_family(&["Scatterv", "Iscatterv", "Scatterv_init"]) {
            "scatterv(@1, $3, $4, $5, $6, $7, $8)"
        } else if in_family(&["Allgather", "Iallgather", "Allgather_init"]) {
            "allgather($0, $1, $2, $4, $5, $6)"
        } else if in_family(&["Allgatherv", "Iallgatherv", "Allgatherv_init"]) {
            "allgatherv($0, $1, $2, @4, $6, $7)"
        } else if in_family(&["Alltoall", "Ialltoall", "Alltoall_init"]) {
            "alltoall($0, $1, $2, $4, $5, $6)"
        } else if in_family(&["Alltoallv", "Ialltoallv", "Alltoallv_init"]) {
            "alltoallv($0, @1, $3, @5, $7, $8)"
        } else if in_family(&["Alltoallw", "Ialltoallw", "Alltoallw_init"]) {
            "alltoallw($0, @1, %3, @5, %7, $8)"
        } else if in_family(&["Neighbor_allgather", "Ineighbor_allgather", "Neighbor_allgather_init"]) {
            "neighbor_allgather($1, $2, $4, $5, $6)"
        } else if in_family(&["Neighbor_allgatherv", "Ineighbor_allgatherv", "Neighbor_allgatherv_init"]) {
            "neighbor_allgatherv($1, $2, @4, $6, $7)"
        } else if in_family(&["Neighbor_alltoall", "Ineighbor_alltoall", "Neighbor_alltoall_init"]) {
            "neighbor_alltoall($1, $2, $4, $5, $6)"
        } else if in_family(&["Neighbor_alltoallv", "Ineighbor_alltoallv", "Neighbor_alltoallv_init"]) {
            "neighbor_alltoallv(@1, $3, @5, $7, $8)"
        } else if in_family(&["Neighbor_alltoallw", "Ineighbor_alltoallw", "Neighbor_alltoallw_init"]) {
            "neighbor_alltoallw(@1, %3, @5, %7, $8)"
        } else if in_family(&["Put", "Rput", "Get", "Rget", "Accumulate", "Raccumulate"]) {
            "rma($1, $2, $3)"
        } else if in_family(&["Get_accumulate", "Rget_accumulate"]) {
            "get_accumulate($1, $2, $4, $5, $6)"
        } else if base == "Fetch_and_op" {
            "rma_elements(2, $2, $3)"
        } else if base == "Compare_and_swap" {
            "rma_elements(3, $3, $4)"
        } else if in_family(&[
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
        ]) {
            "buffer($2, $3)"
        } else if in_family(&[
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
        ]) {
            "buffer($3, $4)"
        } else {
            return None;
        },
    )
}

/// Expands a rule template with the wrapper's arguments.
fn expand_rule(rule: &str, proto: &Proto, tds: &Typedefs) -> Result<String, String> {
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
                    let wide = match tds.resolve(&[elem]) {
                        Some(CType::Prim("c_int")) => false,
                        Some(CType::Prim("c_long" | "c_longlong")) => true,
                        other => return Err(format!("{}: count array of {elem} ({other:?})", proto.name)),
                    };
                    let variant = if wide { "Wide" } else { "Int" };
                    write!(out, "Counts::{variant}(a{n} as *const _)").unwrap()
                }
                _ => write!(out, "Types(a{n} as *const MPI_Datatype)").unwrap(),
            }
            i = e;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

// -------------------------------------------------------------- constants

/// Compiles and runs a C probe printing the constants and type sizes.
fn probe(tc: &Toolchain, out: &Path, aliases: &BTreeMap<String, String>) -> Result<String, String> {
    let mut c = String::from(
        "#include <mpi.h>\n#include <stdio.h>\n#include <stdint.h>\nint main(void) {\n\
         #ifdef OPEN_MPI\n  puts(\"pub(crate) const IMPL: &str = \\\"openmpi\\\";\");\n\
         #elif defined(MPICH)\n  puts(\"pub(crate) const IMPL: &str = \\\"mpich\\\";\");\n\
         #else\n  puts(\"pub(crate) const IMPL: &str = \\\"mpi\\\";\");\n#endif\n",
    );
    c.push_str(
        "  printf(\"pub(crate) const MPI_IN_PLACE: usize = %lu;\\n\", (unsigned long)(uintptr_t)MPI_IN_PLACE);\n",
    );
    for k in ["MPI_SUCCESS", "MPI_ROOT", "MPI_PROC_NULL", "MPI_UNDEFINED", "MPI_CART", "MPI_GRAPH", "MPI_DIST_GRAPH"] {
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
    let src = out.join("mpi_probe.c");
    let exe = out.join("mpi_probe");
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    let o = Command::new(&tc.cc)
        .args(&tc.cflags)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tc.cc))?;
    if !o.status.success() {
        return Err(format!("compiling the MPI constant probe failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    let o = Command::new(&exe).output().map_err(|e| format!("cannot run the MPI constant probe: {e}"))?;
    if !o.status.success() {
        return Err("the MPI constant probe failed".to_owned());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

// ------------------------------------------------------------- generation

fn generate(mpicc: &str, out: &Path) -> Result<String, String> {
    let tc = toolchain(mpicc)?;
    // Regenerate when the MPI installation changes.
    for dir in tc.cflags.iter().filter_map(|f| f.strip_prefix("-I")) {
        for header in ["mpi.h", "mpi_proto.h"] {
            let h = Path::new(dir).join(header);
            if h.is_file() {
                println!("cargo:rerun-if-changed={}", h.display());
            }
        }
    }
    let text = preprocess(&tc, out)?;
    let decls = declarations(&strip_noise(tokenize(&text)));

    let mut tds = Typedefs(HashMap::new());
    for d in &decls {
        if d.first().is_some_and(|t| t == "typedef") {
            tds.add(d);
        }
    }
    let mut aliases = BTreeMap::new();
    let mut protos: BTreeMap<String, Proto> = BTreeMap::new();
    let mut pmpi = std::collections::BTreeSet::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for d in &decls {
        if d.first().is_some_and(|t| t == "typedef") {
            continue;
        }
        match parse_proto(d, &tds, &mut aliases) {
            Some(Parsed::Proto(p)) if p.name.starts_with("PMPI_") => {
                pmpi.insert(p.name.clone());
            }
            Some(Parsed::Proto(p)) => {
                if let Some(why) = excluded(&p.name) {
                    skipped.push((p.name.clone(), why.to_owned()));
                } else {
                    protos.insert(p.name.clone(), p);
                }
            }
            Some(Parsed::Skip(name, why)) if name.starts_with("MPI_") => skipped.push((name, why)),
            _ => {}
        }
    }
    protos.retain(|name, _| {
        let keep = pmpi.contains(&format!("P{name}"));
        if !keep {
            skipped.push((name.clone(), "no PMPI twin declared".to_owned()));
        }
        keep
    });
    if protos.is_empty() {
        return Err(format!("no MPI function prototypes found in the mpi.h used by {mpicc}"));
    }
    for needed in [
        "MPI_Type_size_x",
        "MPI_Comm_size",
        "MPI_Comm_rank",
        "MPI_Comm_test_inter",
        "MPI_Comm_remote_size",
        "MPI_Topo_test",
        "MPI_Cartdim_get",
        "MPI_Graph_neighbors_count",
        "MPI_Dist_graph_neighbors_count",
    ] {
        if !protos.contains_key(needed) {
            return Err(format!("mpi.h of {mpicc} does not declare {needed} (MPI 3 or later is required)"));
        }
    }
    let consts = probe(&tc, out, &aliases)?;

    let mut g = String::new();
    g.push_str("// Generated by build.rs from the installed mpi.h: do not edit.\n\n");
    g.push_str(&consts);
    for (name, ty) in &aliases {
        writeln!(g, "pub(crate) type {name} = {ty};").unwrap();
    }
    let n = protos.len();
    writeln!(g, "pub(crate) const NFUNCS: usize = {n};").unwrap();
    g.push_str("pub(crate) static NAMES: [&str; NFUNCS] = [\n");
    for name in protos.keys() {
        writeln!(g, "    \"{name}\",").unwrap();
    }
    g.push_str("];\n");
    let mut with_size = 0;
    let mut has_size = String::from("pub(crate) static HAS_SIZE: [bool; NFUNCS] = [\n");
    let mut body = String::new();
    writeln!(
        body,
        "static REAL: [AtomicPtr<c_void>; NFUNCS] = [const {{ AtomicPtr::new(core::ptr::null_mut()) }}; NFUNCS];"
    )
    .unwrap();
    for (idx, (name, p)) in protos.iter().enumerate() {
        let base = name.trim_start_matches("MPI_");
        let base = if base.ends_with("_c") && protos.contains_key(&name[..name.len() - 2]) {
            &base[..base.len() - 2]
        } else {
            base
        };
        let rule = if p.ret_is_int { size_rule(base) } else { None };
        let size_expr = match rule {
            Some(r) => {
                with_size += 1;
                Some(expand_rule(r, p, &tds)?)
            }
            None => None,
        };
        writeln!(has_size, "    {},", size_expr.is_some()).unwrap();
        let args: Vec<String> = (0..p.params.len()).map(|i| format!("a{i}")).collect();
        let decl_args: Vec<String> = p.params.iter().enumerate().map(|(i, q)| format!("a{i}: {}", q.rust)).collect();
        let arg_types: Vec<&str> = p.params.iter().map(|q| q.rust.as_str()).collect();
        let ret = if p.ret == "()" { String::new() } else { format!(" -> {}", p.ret) };
        let sig_c: Vec<&str> = p.params.iter().map(|q| q.c.as_str()).collect();
        writeln!(body, "\n/// `{name}({})`", sig_c.join(", ")).unwrap();
        writeln!(body, "#[inline(always)]\n#[allow(clippy::too_many_arguments)]").unwrap();
        writeln!(body, "unsafe fn p{name}({}){ret} {{", decl_args.join(", ")).unwrap();
        writeln!(body, "    type F = unsafe extern \"C\" fn({}){ret};", arg_types.join(", ")).unwrap();
        writeln!(body, "    let f = unsafe {{ core::mem::transmute::<*mut c_void, F>(real({idx}, c\"P{name}\")) }};")
            .unwrap();
        writeln!(body, "    unsafe {{ f({}) }}\n}}", args.join(", ")).unwrap();
        writeln!(body, "#[no_mangle]\n#[allow(clippy::too_many_arguments)]").unwrap();
        writeln!(body, "pub unsafe extern \"C\" fn {name}({}){ret} {{", decl_args.join(", ")).unwrap();
        writeln!(body, "    let Some(t) = enter() else {{ return unsafe {{ p{name}({}) }} }};", args.join(", "))
            .unwrap();
        writeln!(body, "    let t0 = now();").unwrap();
        writeln!(body, "    let r = unsafe {{ p{name}({}) }};", args.join(", ")).unwrap();
        writeln!(body, "    let t1 = now();").unwrap();
        match &size_expr {
            Some(e) => {
                writeln!(body, "    let bytes = if r == MPI_SUCCESS {{ crate::sizes::{e} }} else {{ 0 }};").unwrap()
            }
            None => writeln!(body, "    let bytes = 0;").unwrap(),
        }
        writeln!(body, "    leave(t, {idx}, t1.wrapping_sub(t0), bytes);").unwrap();
        match name.as_str() {
            "MPI_Init" | "MPI_Init_thread" | "MPI_Session_init" => {
                writeln!(body, "    if r == MPI_SUCCESS {{ crate::push::after_init(); }}").unwrap()
            }
            "MPI_Finalize" | "MPI_Session_finalize" => writeln!(body, "    crate::push::after_finalize();").unwrap(),
            _ => {}
        }
        writeln!(body, "    r\n}}").unwrap();
    }
    has_size.push_str("];\n");
    g.push_str(&has_size);
    g.push_str(&body);
    std::fs::write(out.join("wrappers.rs"), g).map_err(|e| e.to_string())?;

    let mut excl = String::from("# Functions declared by mpi.h and not wrapped\n");
    for (name, why) in &skipped {
        writeln!(excl, "{name}: {why}").unwrap();
    }
    std::fs::write(out.join("excluded.txt"), excl).map_err(|e| e.to_string())?;
    let impl_name = consts.lines().next().unwrap_or_default().rsplit('"').nth(1).unwrap_or("mpi").to_owned();
    Ok(format!(
        "tau_pmpi: wrapped {n} MPI functions of {impl_name} ({with_size} with a byte-size rule), {} excluded (see {})",
        skipped.len(),
        out.join("excluded.txt").display()
    ))
}
