//! What `-m` reads in ELF files (64-bit little-endian): the `DT_NEEDED`
//! entries of a program, which symbols it defines itself, and the bytes of
//! a symbol of the shim. Nothing is loaded or run; every read is bounded.

use std::fs::File;
use std::io::{Error, ErrorKind, Result};
use std::os::unix::fs::FileExt;
use std::path::Path;

fn bad(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, what.to_owned())
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// An open ELF file and its header.
struct Elf {
    file: File,
    hdr: Vec<u8>,
}

/// One section header: type, address, file offset, size, linked section.
#[derive(Clone, Copy)]
struct Section {
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

/// A loaded segment: `(vaddr, offset, filesz)`.
type Load = (u64, u64, u64);
/// The loaded segments and the dynamic one's `(offset, filesz)`.
type Segments = (Vec<Load>, Option<(u64, u64)>);

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;

impl Elf {
    fn open(path: &Path) -> Result<Elf> {
        let file = File::open(path)?;
        let mut hdr = vec![0u8; 64];
        file.read_exact_at(&mut hdr, 0)?;
        if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        Ok(Elf { file, hdr })
    }

    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        if len > 256 << 20 {
            return Err(bad("table too large"));
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// `(vaddr, offset, filesz)` of each `PT_LOAD`, and `(offset, filesz)`
    /// of the `PT_DYNAMIC` segment.
    fn segments(&self) -> Result<Segments> {
        let (phoff, phentsize, phnum) =
            (u64_at(&self.hdr, 0x20), u16_at(&self.hdr, 0x36) as u64, u16_at(&self.hdr, 0x38) as u64);
        if phentsize < 56 || phnum > 4096 {
            return Err(bad("bad program headers"));
        }
        let phs = self.read(phoff, phentsize * phnum)?;
        let (mut loads, mut dynamic) = (Vec::new(), None);
        for i in 0..phnum as usize {
            let ph = &phs[i * phentsize as usize..];
            let (offset, vaddr, filesz) = (u64_at(ph, 0x08), u64_at(ph, 0x10), u64_at(ph, 0x20));
            match u32_at(ph, 0) {
                1 => loads.push((vaddr, offset, filesz)),
                2 => dynamic = Some((offset, filesz)),
                _ => {}
            }
        }
        Ok((loads, dynamic))
    }

    fn sections(&self) -> Result<Vec<Section>> {
        let (shoff, shentsize, shnum) =
            (u64_at(&self.hdr, 0x28), u16_at(&self.hdr, 0x3a) as u64, u16_at(&self.hdr, 0x3c) as u64);
        if shoff == 0 || shnum == 0 {
            return Ok(Vec::new());
        }
        if shentsize < 64 || shnum > 65_535 {
            return Err(bad("bad section headers"));
        }
        let shs = self.read(shoff, shentsize * shnum)?;
        Ok((0..shnum as usize)
            .map(|i| {
                let s = &shs[i * shentsize as usize..];
                Section {
                    kind: u32_at(s, 4),
                    addr: u64_at(s, 0x10),
                    offset: u64_at(s, 0x18),
                    size: u64_at(s, 0x20),
                    link: u32_at(s, 0x28),
                }
            })
            .collect())
    }

    /// Every defined symbol of the symbol tables (`.symtab`, `.dynsym`),
    /// with its value and section index, passed to `f` until it says stop.
    fn defined_symbols(&self, mut f: impl FnMut(&[u8], u64, usize) -> bool) -> Result<()> {
        let sections = self.sections()?;
        for table in sections.iter().filter(|s| matches!(s.kind, SHT_SYMTAB | SHT_DYNSYM)) {
            let Some(strtab) = sections.get(table.link as usize) else { continue };
            let syms = self.read(table.offset, table.size)?;
            let strings = self.read(strtab.offset, strtab.size)?;
            for sym in syms.chunks_exact(24) {
                let shndx = u16_at(sym, 6) as usize;
                if shndx == 0 || shndx >= 0xff00 {
                    continue;
                }
                let Some(name) = strings.get(u32_at(sym, 0) as usize..) else { continue };
                let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
                if !f(name, u64_at(sym, 8), shndx) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// `DT_NEEDED` entries of a 64-bit little-endian ELF file.
pub(crate) fn needed_libs(path: &Path) -> Result<Vec<String>> {
    let elf = Elf::open(path)?;
    let (loads, dynamic) = elf.segments()?;
    let Some((dyn_off, dyn_size)) = dynamic else { return Ok(Vec::new()) };
    let dyns = elf.read(dyn_off, dyn_size.min(1 << 20))?;
    let (mut needed, mut strtab, mut strsz) = (Vec::new(), None, 0u64);
    for e in dyns.chunks_exact(16) {
        let (tag, val) = (u64_at(e, 0), u64_at(e, 8));
        match tag {
            0 => break,
            1 => needed.push(val),
            5 => strtab = Some(val),
            10 => strsz = val,
            _ => {}
        }
    }
    let strtab = strtab.ok_or_else(|| bad("no string table"))?;
    let file_off = loads
        .iter()
        .find(|(vaddr, _, size)| strtab >= *vaddr && strtab < vaddr + size)
        .map(|(vaddr, off, _)| strtab - vaddr + off)
        .ok_or_else(|| bad("string table outside the file"))?;
    let strings = elf.read(file_off, strsz.min(16 << 20))?;
    Ok(needed
        .into_iter()
        .filter_map(|o| {
            let s = strings.get(o as usize..)?;
            let end = s.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        })
        .collect())
}

/// The first of `names`, in their order, that the file defines itself (in
/// `.symtab` or `.dynsym`).
pub(crate) fn defines_any(path: &Path, names: &[&str]) -> Result<Option<String>> {
    let elf = Elf::open(path)?;
    let mut best: Option<usize> = None;
    elf.defined_symbols(|name, _, _| {
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
        best != Some(0)
    })?;
    Ok(best.map(|i| names[i].to_owned()))
}

/// The bytes of the defined symbol `name` up to its first NUL (a C string
/// the file holds as data), if the file defines it.
pub(crate) fn symbol_string(path: &Path, name: &str) -> Result<Option<String>> {
    let elf = Elf::open(path)?;
    let sections = elf.sections()?;
    let mut at = None;
    elf.defined_symbols(|n, value, shndx| {
        if n == name.as_bytes() {
            at = Some((value, shndx));
        }
        at.is_none()
    })?;
    let Some((value, shndx)) = at else { return Ok(None) };
    let s = sections.get(shndx).ok_or_else(|| bad("symbol in no section"))?;
    if value < s.addr || value >= s.addr + s.size {
        return Err(bad("symbol outside its section"));
    }
    let bytes = elf.read(s.offset + (value - s.addr), (s.addr + s.size - value).min(64 << 10))?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_entries_and_own_symbols_are_read() {
        let me = std::env::current_exe().unwrap();
        let libs = needed_libs(&me).unwrap();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        // This test binary defines `main` and not `MPI_Init`.
        assert_eq!(defines_any(&me, &["MPI_Init", "main"]).unwrap().as_deref(), Some("main"));
        assert_eq!(defines_any(&me, &["main", "_start"]).unwrap().as_deref(), Some("main"), "in the order asked");
        assert_eq!(defines_any(&me, &["_start", "main"]).unwrap().as_deref(), Some("_start"));
        assert_eq!(defines_any(&me, &["MPI_Init", "mpi_init_"]).unwrap(), None);
        assert_eq!(symbol_string(&me, "no_such_symbol_here").unwrap(), None);
        let script = std::env::temp_dir().join(format!("tau_mpi_script_{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        assert!(needed_libs(&script).is_err());
        assert!(defines_any(&script, &["MPI_Init"]).is_err());
        std::fs::remove_file(&script).unwrap();
    }
}
