//! The C side: tokens, declarations, typedefs and prototypes of a preprocessed `mpi.h`.
//!
//! Only what the calling convention needs is understood: whether a type is
//! void, a scalar (and which), a pointer, a function type or an aggregate
//! passed by value. A declaration that is not understood is reported, not
//! guessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Splits preprocessed C into tokens (identifiers, literals, punctuation).
pub(crate) fn tokenize(text: &str) -> Vec<String> {
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
pub(crate) fn strip_noise(tokens: Vec<String>) -> Vec<String> {
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
pub(crate) fn declarations(tokens: &[String]) -> Vec<Vec<String>> {
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
pub(crate) enum CType {
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

/// Every `typedef` of the header, by name.
#[derive(Debug, Default)]
pub(crate) struct Typedefs(HashMap<String, CType>);

impl Typedefs {
    /// Classifies type tokens (no declarator name, no pointer).
    pub(crate) fn resolve(&self, toks: &[&str]) -> Option<CType> {
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

    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// One parameter of a prototype.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// C spelling, for the generated documentation.
    pub c: String,
    /// Rust type in the wrapper's signature.
    pub rust: String,
    /// Element type of a pointer parameter (`int`, `MPI_Count`, ...): the
    /// last type word before the first `*` or `[`.
    pub pointee: Option<String>,
}

/// A function prototype the shim can define with the same C signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Proto {
    pub name: String,
    /// Rust return type (`()` for `void`).
    pub ret: String,
    pub params: Vec<Param>,
}

impl Proto {
    /// Returns an MPI error code (only those can have a byte rule).
    pub fn returns_int(&self) -> bool {
        self.ret == "c_int"
    }
}

/// One `MPI_*` declaration of the header, in the order declared.
#[derive(Debug, Clone, PartialEq)]
pub enum Declared {
    Proto(Proto),
    /// Declared but cannot be defined by the shim: name and why.
    Skip(String, String),
}

/// What the header declares.
#[derive(Debug, Default)]
pub struct Header {
    pub(crate) typedefs: Typedefs,
    /// `MPI_*` and `MPIX_*` functions, in declaration order.
    pub declared: Vec<Declared>,
    /// Names of the `PMPI_*` (and `PMPIX_*`) functions declared.
    pub pmpi: BTreeSet<String>,
    /// MPI typedefs used by a prototype, with the Rust type each aliases.
    pub aliases: BTreeMap<String, String>,
}

impl Header {
    /// Parses preprocessed C (`cc -E -P` output of `#include <mpi.h>`).
    pub fn parse(text: &str) -> Header {
        let decls = declarations(&strip_noise(tokenize(text)));
        let mut h = Header::default();
        for d in decls.iter().filter(|d| d.first().is_some_and(|t| t == "typedef")) {
            h.typedefs.add(d);
        }
        for d in decls.iter().filter(|d| d.first().is_none_or(|t| t != "typedef")) {
            match parse_proto(d, &h.typedefs, &mut h.aliases) {
                Some(Declared::Proto(p)) if p.name.starts_with('P') => {
                    h.pmpi.insert(p.name);
                }
                Some(Declared::Skip(name, _)) if name.starts_with('P') => {}
                Some(d) => h.declared.push(d),
                None => {}
            }
        }
        h
    }

    /// Classifies a type name (`MPI_Count`, `int`, ...).
    pub(crate) fn resolve(&self, name: &str) -> Option<CType> {
        self.typedefs.resolve(&[name])
    }
}

fn parse_proto(decl: &[String], tds: &Typedefs, aliases: &mut BTreeMap<String, String>) -> Option<Declared> {
    let toks: Vec<&str> =
        decl.iter().map(String::as_str).filter(|t| !matches!(*t, "extern" | "static" | "inline")).collect();
    let open = toks.iter().position(|t| *t == "(")?;
    if open == 0 || toks.last() != Some(&")") {
        return None;
    }
    let name = toks[open - 1];
    if !["MPI_", "PMPI_", "MPIX_", "PMPIX_"].iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let ret_toks = &toks[..open - 1];
    if ret_toks.is_empty() || ret_toks.contains(&"(") {
        return None;
    }
    let skip = |why: &str| Some(Declared::Skip(name.to_owned(), why.to_owned()));
    let ret = if ret_toks.contains(&"*") {
        "*mut c_void".to_owned()
    } else {
        match rust_type(ret_toks, tds, aliases) {
            Some(t) => t,
            None => return skip("return type not understood"),
        }
    };
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
            if is_ident(last) && !TYPE_WORDS.contains(&last) && !tds.contains(last) {
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
    Some(Declared::Proto(Proto { name: name.to_owned(), ret, params }))
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

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
