//! Where each dumped page of a process was: its mappings (mm-PID.img) and
//! which pages of its page image hold which addresses (pagemap-PID.img),
//! so that two checkpoints of one process can be compared mapping by
//! mapping (`lazarus diff`).

use std::path::Path;

use crate::criu::images::{self as img, Result};

/// One mapping of a process, named as /proc/PID/maps would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, a file's path, `anonymous`
    /// or `shared anonymous`.
    pub name: String,
}

/// A run of pages CRIU wrote: `nr_pages` pages from `vaddr`, the first of
/// them page `first` of the page image `pages-ID.img`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub first: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMemory {
    pub pid: u32,
    pub mappings: Vec<Mapping>,
    /// The page image its pages are in (`pages-ID.img`).
    pub pages_id: u32,
    pub runs: Vec<PageRun>,
}

// CRIU's VmaEntry.status bits (criu/include/image.h).
// A stack grows down: VmaEntry.flags (mmap's) has MAP_GROWSDOWN. (CRIU's
// own stack bit in status is not set for a process's main stack.)
const MAP_GROWSDOWN: u64 = 0x0100;
const VMA_AREA_VSYSCALL: u64 = 1 << 2;
const VMA_AREA_VDSO: u64 = 1 << 3;
const VMA_AREA_HEAP: u64 = 1 << 5;
const VMA_FILE_PRIVATE: u64 = 1 << 6;
const VMA_FILE_SHARED: u64 = 1 << 7;
const VMA_ANON_SHARED: u64 = 1 << 8;
const VMA_AREA_VVAR: u64 = 1 << 12;
const FD_TYPE_REG: u32 = 1;

/// Every dumped process's memory layout in the image directory `dir`.
pub fn processes(dir: &Path) -> Result<Vec<ProcessMemory>> {
    let files = reg_files(dir)?;
    let mut out = Vec::new();
    for e in img::read_image(&dir.join("pstree.img"), img::PSTREE_MAGIC)? {
        let pid = e.u32(1, "pid")?;
        let Some(pagemap) =
            img::read_optional_image(&dir.join(format!("pagemap-{pid}.img")), img::PAGEMAP_MAGIC)?
        else {
            continue; // a zombie: no memory
        };
        let mm = img::read_image(&dir.join(format!("mm-{pid}.img")), img::MM_MAGIC)?;
        let mappings = match mm.first() {
            Some(mm) => mappings(mm, &files)?,
            None => Vec::new(),
        };
        // PagemapHead pages_id=1, then the entries.
        let Some((head, entries)) = pagemap.split_first() else {
            continue;
        };
        let pages_id = head.u32(1, "pages_id")?;
        let mut runs = Vec::new();
        let mut next = 0u64;
        for e in entries {
            let e = img::PagemapEntry::of(e)?;
            if e.flags & img::PE_PRESENT != 0 {
                runs.push(PageRun {
                    vaddr: e.vaddr,
                    nr_pages: e.pages,
                    first: next,
                });
                next += e.pages;
            }
        }
        out.push(ProcessMemory {
            pid,
            mappings,
            pages_id,
            runs,
        });
    }
    Ok(out)
}

/// MmEntry vmas=14; VmaEntry start=1, end=2, shmid=4 (a file mapping's
/// file id), flags=6, status=7.
fn mappings(mm: &img::Entry, files: &[(u64, String)]) -> Result<Vec<Mapping>> {
    let mut out = Vec::new();
    for v in mm.messages(14, "vmas")? {
        let status = v.varint(7, "status")?.unwrap_or(0);
        let shmid = v.varint(4, "shmid")?.unwrap_or(0);
        let flags = v.varint(6, "flags")?.unwrap_or(0);
        let name = if status & VMA_AREA_HEAP != 0 {
            "[heap]".to_string()
        } else if flags & MAP_GROWSDOWN != 0 {
            "[stack]".to_string()
        } else if status & VMA_AREA_VDSO != 0 {
            "[vdso]".to_string()
        } else if status & VMA_AREA_VVAR != 0 {
            "[vvar]".to_string()
        } else if status & VMA_AREA_VSYSCALL != 0 {
            "[vsyscall]".to_string()
        } else if status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            files
                .iter()
                .find(|(id, _)| *id == shmid)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| format!("file {shmid}"))
        } else if status & VMA_ANON_SHARED != 0 {
            "shared anonymous".to_string()
        } else {
            "anonymous".to_string()
        };
        out.push(Mapping {
            start: v.varint(1, "start")?.unwrap_or(0),
            end: v.varint(2, "end")?.unwrap_or(0),
            name,
        });
    }
    out.sort_by_key(|m| m.start);
    Ok(out)
}

/// files.img: FileEntry type=1, id=2, reg=3 (RegFileEntry name=6).
fn reg_files(dir: &Path) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    if let Some(files) = img::read_optional_image(&dir.join("files.img"), img::FILES_MAGIC)? {
        for f in files {
            if f.u32(1, "type")? != FD_TYPE_REG {
                continue;
            }
            let id = f.varint(2, "id")?.unwrap_or(0);
            if let Some(name) = f
                .message(3, "reg")?
                .map(|r| r.string(6, "name"))
                .transpose()?
            {
                out.extend(name.map(|n| (id, n)));
            }
        }
    }
    Ok(out)
}

impl ProcessMemory {
    /// The mapping holding `addr`, by name (`?` outside every mapping).
    pub fn mapping_of(&self, addr: u64) -> &str {
        let i = self.mappings.partition_point(|m| m.end <= addr);
        match self.mappings.get(i) {
            Some(m) if m.start <= addr => &m.name,
            _ => "?",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real dump in testdata (see `real_dump_tests`): the pages the
    /// pagemaps list are the page images' pages, and the mappings are
    /// named as /proc/PID/maps names them.
    #[test]
    fn a_real_dump_maps_every_page_to_a_named_mapping() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/listen-fork");
        let procs = processes(&dir).unwrap();
        assert_eq!(procs.len(), 2);
        for p in &procs {
            let pages: u64 = p.runs.iter().map(|r| r.nr_pages).sum();
            let file = dir.join(format!("pages-{}.img", p.pages_id));
            assert_eq!(
                pages * 4096,
                std::fs::metadata(file).unwrap().len(),
                "{p:?}"
            );
            let names: Vec<&str> = p.mappings.iter().map(|m| m.name.as_str()).collect();
            assert!(
                names.contains(&"[stack]") && names.contains(&"[vdso]"),
                "{names:?}"
            );
            assert!(
                names.iter().any(|n| n.ends_with("listen-fork")),
                "the executable by its path: {names:?}"
            );
            for r in &p.runs {
                assert_ne!(p.mapping_of(r.vaddr), "?", "{r:?} in no mapping");
            }
        }
    }
}
