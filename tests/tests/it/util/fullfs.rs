//! A small tmpfs mounted on a test's directory (root only), to make a
//! daemon's writes fail for want of space.

use std::path::{Path, PathBuf};

use super::cmd;

/// A tmpfs of 64 KiB mounted on a directory; unmounted on drop.
pub struct FullFs(PathBuf);

impl FullFs {
    /// Mounts it on `dir`, filled up: nothing more can be written.
    pub fn mount(dir: PathBuf) -> FullFs {
        let fs = FullFs::empty(dir);
        fs.fill();
        fs
    }

    /// Mounts it on `dir`, empty.
    pub fn empty(dir: PathBuf) -> FullFs {
        std::fs::create_dir_all(&dir).unwrap();
        let out = cmd("mount").args(["-t", "tmpfs", "-o", "size=64k"]).arg("tmpfs").arg(&dir).run();
        assert!(out.status().success(), "a full filesystem for this test needs mount (root): {}", out.stderr());
        FullFs(dir)
    }

    /// Fills what is left of it.
    pub fn fill(&self) {
        let filler = std::fs::write(self.0.join("filler"), vec![0u8; 1 << 20]);
        assert_eq!(filler.map_err(|e| e.raw_os_error()), Err(Some(nix::errno::Errno::ENOSPC as i32)));
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FullFs {
    fn drop(&mut self) {
        let _ = cmd("umount").arg(&self.0).run();
    }
}
