//! Incremental dumps, where the kernel tracks dirty memory (its soft-dirty
//! bits: `criu check --feature mem_dirty_track`). A dump with CRIU's
//! `track_mem` clears the bits; the next one, shown the previous dump as
//! its parent (`parent_img`), writes only the pages written since and
//! marks the others "in parent" (PE_PARENT) in its pagemaps. The container
//! is then frozen for the changed pages only.
//!
//! Lazarus keeps no chain of image directories. [`complete`] makes such a
//! dump whole again right after CRIU (the container already running),
//! taking the parent's pages from wherever they are kept (the snapshot
//! store: [`ParentPages`]), so every snapshot restores, exports and is
//! removed on its own. The parent CRIU is shown is only what its dump
//! reads of one ([`save_parent`]): the previous dump's inventory (CRIU
//! compares each process's start time with it, so a reused pid is dumped
//! whole) and its pagemaps, all present once completed, beside empty page
//! images (CRIU checks that every page it leaves to the parent is in the
//! parent's pagemap; it reads none of its pages).
//!
//! The client asks for it with a file in the image directory
//! ([`REQUEST_FILE`]), as a migration's control files do; the dump takes
//! it out before CRIU runs.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::criu::images::{self as img, Entry, PagemapEntry, PE_PARENT, PE_PRESENT};
use crate::criu::rpc;
use crate::error::{Error, Result};

/// The request file a client leaves in the image directory.
pub const REQUEST_FILE: &str = "lazarus-incremental.json";
/// The link CRIU makes in the image directory to its parent
/// (criu/include/image.h: CR_PARENT_LINK).
pub const PARENT_LINK: &str = "parent";

// PagemapHead: pages_id=1; PagemapEntry: in_parent=3 (older CRIUs),
// flags=4 (see `img::PagemapEntry`).
const PAGE: u64 = 4096;

/// A dump that tracks dirty memory, and the parent it is incremental to
/// (None: the first of a series, dumped whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremental {
    pub parent: Option<PathBuf>,
}

impl Incremental {
    /// Leaves the request in `images`, for the dump to take.
    pub fn write(&self, images: &Path) -> Result<()> {
        if let Some(p) = &self.parent {
            check_parent(p)?;
        }
        crate::criu::write_private(&images.join(REQUEST_FILE), &serde_json::to_vec(self)?)
    }

    /// Takes the request out of `images` (so no archive or store sees it),
    /// if there is one.
    pub fn take(images: &Path) -> Result<Option<Incremental>> {
        let path = images.join(REQUEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("read {}", path.display()))(e)),
        };
        fs::remove_file(&path).map_err(Error::io(format!("remove {}", path.display())))?;
        let request: Incremental = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!(
                "invalid incremental request {}: {e}",
                path.display()
            ))
        })?;
        if let Some(p) = &request.parent {
            check_parent(p)?;
        }
        Ok(Some(request))
    }

    /// CRIU's options for it: memory tracking, and the parent to leave
    /// unchanged pages to.
    pub fn apply(&self, opts: &mut rpc::Criu_opts) {
        opts.set_track_mem(true);
        if let Some(p) = &self.parent {
            opts.set_parent_img(p.to_string_lossy().into_owned());
        }
    }
}

/// A parent is an absolute directory: CRIU resolves a relative one from
/// the image directory, which may be anywhere.
fn check_parent(p: &Path) -> Result<()> {
    match p.is_absolute() && p.is_dir() {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "an incremental dump's parent must be an existing absolute directory, not {}",
            p.display()
        ))),
    }
}

/// Where a completed dump's parent pages are read from.
pub trait ParentPages {
    /// The parent's image `name` (a pagemap), None when it has none.
    fn image(&mut self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `count` pages of the parent's page image `name` from page
    /// `first` into `out`.
    fn copy_pages(&mut self, name: &str, first: u64, count: u64, out: &mut dyn Write)
        -> Result<()>;
}

/// What [`complete`] did: pages CRIU wrote, and pages taken from the
/// parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completed {
    pub dumped_pages: u64,
    pub parent_pages: u64,
}

/// Makes the incremental dump in `images` whole: every page its pagemaps
/// leave to the parent is copied from `parent` into its page image at its
/// place, every entry marked present, and CRIU's parent link removed. A
/// page the parent does not have is an error naming it (the dump is then
/// of no use; nothing is half-rewritten: each image is replaced whole).
pub fn complete(images: &Path, parent: &mut dyn ParentPages) -> Result<Completed> {
    let mut done = Completed::default();
    for name in pagemaps(images)? {
        let one = complete_one(images, &name, parent)?;
        done.dumped_pages += one.dumped_pages;
        done.parent_pages += one.parent_pages;
    }
    let link = images.join(PARENT_LINK);
    match fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", link.display()))(e)),
    }
    Ok(done)
}

/// The page image a pagemap's head names.
fn pages_name(head: &Entry) -> Result<String> {
    Ok(format!("pages-{}.img", head.u32(1, "pages_id")?))
}

fn complete_one(images: &Path, name: &str, parent: &mut dyn ParentPages) -> Result<Completed> {
    let path = images.join(name);
    let mut entries = img::read_image(&path, img::PAGEMAP_MAGIC)?;
    let Some((head, _)) = entries.split_first() else {
        return Ok(Completed::default());
    };
    let own_pages = pages_name(head)?;
    let runs = entries[1..]
        .iter()
        .map(PagemapEntry::of)
        .collect::<img::Result<Vec<_>>>()?;
    let mut done = Completed::default();
    for r in &runs {
        match r.flags & PE_PARENT != 0 {
            true => done.parent_pages += r.pages,
            false if r.flags & PE_PRESENT != 0 => done.dumped_pages += r.pages,
            false => {}
        }
    }
    if done.parent_pages == 0 {
        return Ok(done);
    }
    let from = ParentMap::read(parent, name)?;

    let pages_path = images.join(&own_pages);
    let mut own = match File::open(&pages_path) {
        Ok(f) => Some(BufReader::with_capacity(1 << 20, f)),
        // Nothing written since the parent: CRIU may write no page image.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("open {}", pages_path.display()))(e)),
    };
    let new_pages = images.join(format!("{own_pages}.whole"));
    let new_map = images.join(format!("{name}.whole"));
    let context = format!("complete {} from its parent", pages_path.display());
    let mut write = || -> Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, super::pages::create_private(&new_pages)?);
        for (r, e) in runs.iter().zip(entries[1..].iter_mut()) {
            if r.flags & PE_PARENT != 0 {
                from.copy(parent, r.vaddr, r.pages, &mut out)?;
                e.set_varint(4, (r.flags & !PE_PARENT) | PE_PRESENT);
                e.remove(3);
            } else if r.flags & PE_PRESENT != 0 {
                let own = own.as_mut().ok_or_else(|| {
                    Error::InvalidArgument(format!("{} is missing", pages_path.display()))
                })?;
                let want = r.pages * PAGE;
                let copied = std::io::copy(&mut own.by_ref().take(want), &mut out)
                    .map_err(Error::io(&context))?;
                if copied != want {
                    return Err(Error::InvalidArgument(format!(
                        "{} ends before the pages its pagemap lists",
                        pages_path.display()
                    )));
                }
            }
        }
        out.into_inner()
            .map_err(|e| Error::io(&context)(e.into_error()))?
            .sync_all()
            .map_err(Error::io(&context))?;
        super::pages::create_private(&new_map)?
            .write_all(&img::encode_image(img::PAGEMAP_MAGIC, &entries))
            .map_err(Error::io(&context))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&new_pages);
        let _ = fs::remove_file(&new_map);
        return Err(e);
    }
    for (tmp, path) in [(&new_pages, &pages_path), (&new_map, &path)] {
        fs::rename(tmp, path).map_err(Error::io(&context))?;
    }
    Ok(done)
}

/// The parent's pagemap `name`: where each of its present pages is in
/// its page image.
struct ParentMap {
    name: String,
    pages: String,
    /// (vaddr, pages, first page in the image), by address.
    runs: Vec<(u64, u64, u64)>,
}

impl ParentMap {
    fn read(parent: &mut dyn ParentPages, name: &str) -> Result<ParentMap> {
        let bytes = parent.image(name)?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the dump leaves pages of {name} to its parent, which has no {name}"
            ))
        })?;
        let entries = img::decode_image(Path::new(name), &bytes, img::PAGEMAP_MAGIC)?;
        let Some((head, rest)) = entries.split_first() else {
            return Err(Error::InvalidArgument(format!(
                "the parent's {name} is empty"
            )));
        };
        let mut runs = Vec::new();
        let mut next = 0;
        for e in rest {
            let r = PagemapEntry::of(e)?;
            if r.flags & PE_PRESENT != 0 {
                runs.push((r.vaddr, r.pages, next));
                next += r.pages;
            }
        }
        runs.sort_unstable();
        Ok(ParentMap {
            name: name.to_string(),
            pages: pages_name(head)?,
            runs,
        })
    }

    /// Copies `pages` pages from `vaddr` out of the parent.
    fn copy(
        &self,
        parent: &mut dyn ParentPages,
        mut vaddr: u64,
        mut pages: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        while pages > 0 {
            let at = self.runs.partition_point(|r| r.0 <= vaddr);
            let run = at
                .checked_sub(1)
                .map(|i| self.runs[i])
                .filter(|(start, n, _)| vaddr < start + n * PAGE)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "the dump leaves page {vaddr:#x} of {} to its parent, which does not \
                         have it",
                        self.name
                    ))
                })?;
            let offset = (vaddr - run.0) / PAGE;
            let n = pages.min(run.1 - offset);
            parent.copy_pages(&self.pages, run.2 + offset, n, out)?;
            vaddr += n * PAGE;
            pages -= n;
        }
        Ok(())
    }
}

/// The pagemap images in `images` (one per process, and shared memory's).
fn pagemaps(images: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = fs::read_dir(images).map_err(Error::io(format!("read {}", images.display())))?;
    for e in dir {
        let e = e.map_err(Error::io(format!("read {}", images.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("pagemap-") && name.ends_with(".img") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Saves what the next dump's CRIU reads of its parent from the complete
/// dump in `images` into `dest` (a new directory): the inventory, every
/// pagemap, and an empty page image for each.
pub fn save_parent(images: &Path, dest: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(Error::io(format!("make {}", dest.display())))?;
    let mut names = pagemaps(images)?;
    names.push("inventory.img".into());
    for name in &names {
        let bytes = fs::read(images.join(name))
            .map_err(Error::io(format!("read {}", images.join(name).display())))?;
        if name.starts_with("pagemap-") {
            let entries = img::decode_image(&images.join(name), &bytes, img::PAGEMAP_MAGIC)?;
            if let Some(head) = entries.first() {
                super::pages::create_private(&dest.join(pages_name(head)?))?;
            }
        }
        super::pages::create_private(&dest.join(name))?
            .write_all(&bytes)
            .map_err(Error::io(format!("write {}", dest.join(name).display())))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
