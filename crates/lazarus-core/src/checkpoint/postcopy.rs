//! Migration dumps whose memory moves through CRIU's page server, in one
//! of two directions ([`PageMode`]):
//!
//! - post-copy (lazy pages): the source's dump sends only the minimal state
//!   and then serves the process's memory from a CRIU page server; the
//!   destination resumes the process at once and a lazy-pages daemon
//!   fetches the memory behind it (on fault through userfaultfd, and in the
//!   background until every page is there);
//! - stop-and-copy (push): the source's dump sends every page to the
//!   destination's page server as it reads it (no page touches the
//!   source's disk), then waits, frozen, at CRIU's post-dump notification
//!   for the client's word: released, the tree ends as after any dump;
//!   called off, CRIU resumes it where it was.
//!
//! A checkpoint asks for either with a [`PageServer`] file in its image
//! directory, written by `lazarus migrate` before the dump (the first word
//! of the protocol in [`super::control`]); the same file
//! travels in the archive and tells the destination's restore where a lazy
//! memory is. CRIU's ends of the page stream are on each host's loopback
//! only, never on the network: a Lazarus page tunnel (`channel::tunnel`)
//! carries the stream between the hosts, authenticated and encrypted with
//! the migration key, so CRIU's own TLS is not used.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::control;
use crate::criu::{write_private, PageDaemonRequest};
use crate::error::{Error, Result};

/// CRIU sizes its page pipes at about 3.3 MB; below this cap (the kernel's
/// default is 1 MiB, and root here lacks CAP_SYS_RESOURCE to exceed it) a
/// lazy dump fails half-way with "page-pipe: splice: Bad file descriptor".
pub const MIN_PIPE_MAX_SIZE: u64 = 4 << 20;
const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

/// Which way the memory goes through the page server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageMode {
    /// Post-copy: the page server is the source's dump, serving the memory
    /// to the destination's lazy-pages daemon after the destination resumed.
    #[default]
    Lazy,
    /// Stop-and-copy: the page server is the destination's; the source's
    /// dump sends it every page before the destination restores.
    Push,
}

/// The page server, as CRIU on this host reaches it: on loopback (the
/// tunnel's end or CRIU's own listener; see the module's head).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageServer {
    /// Lazy: where the dump's page server listens (127.0.0.1). Push: the
    /// tunnel's door the dump sends the pages to.
    pub address: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub mode: PageMode,
    /// Lazy: the receiving host's tunnel door on its loopback, where its
    /// lazy-pages daemon fetches the memory (absent: `port`).
    #[serde(default)]
    pub fetch_port: Option<u16>,
}

impl PageServer {
    /// A page stream end on this host's loopback.
    pub fn local(port: u16, mode: PageMode) -> PageServer {
        PageServer {
            address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
            mode,
            fetch_port: None,
        }
    }

    /// The request in `images`, if the checkpoint is a post-copy one.
    pub fn read(images: &Path) -> Result<Option<PageServer>> {
        let path = control::request_path(images);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::InvalidArgument(format!("invalid post-copy request {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()))(e)),
        }
    }

    /// Writes the request into `images` (private: it holds a key).
    pub fn write(&self, images: &Path) -> Result<()> {
        write_private(&control::request_path(images), &serde_json::to_vec(self)?)
    }

    /// The request for the CRIU page daemon at this migration's end of the
    /// page stream: its images in `images`, its sockets and logs in `work`.
    pub fn daemon_request<'a>(&'a self, images: &'a Path, work: &'a Path) -> PageDaemonRequest<'a> {
        let port = match self.mode {
            PageMode::Lazy => self.fetch_port.unwrap_or(self.port),
            PageMode::Push => self.port,
        };
        PageDaemonRequest {
            images,
            work,
            address: self.address,
            port,
        }
    }
}

const PAGE_SIZE: u64 = 4096;

/// The memory a post-copy dump left to its page server: the pages its
/// pagemaps mark lazy. (CRIU's own dump statistics cannot say: its page
/// server resets them before it writes them.)
pub fn lazy_bytes(images: &Path) -> Result<u64> {
    Ok(lazy_pages(images)?.iter().map(|r| r.2).sum::<u64>() * PAGE_SIZE)
}

/// The runs of pages a post-copy dump left to its page server, what the
/// receiver's page pump asks it for (nothing else: a request outside them
/// fails the dump).
#[cfg(feature = "channel")]
pub fn lazy_runs(images: &Path) -> Result<Vec<crate::channel::tunnel::LazyRun>> {
    Ok(lazy_pages(images)?
        .into_iter()
        .map(|(pid, vaddr, nr_pages)| crate::channel::tunnel::LazyRun {
            pid,
            vaddr,
            nr_pages,
        })
        .collect())
}

/// (pid, first address, pages) of every pagemap entry marked lazy, by pid
/// and address.
fn lazy_pages(images: &Path) -> Result<Vec<(u64, u64, u64)>> {
    use crate::criu::images::{read_image, PagemapEntry, PAGEMAP_MAGIC, PE_LAZY};
    let mut runs = Vec::new();
    let dir = std::fs::read_dir(images).map_err(Error::io(format!("read {}", images.display())))?;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name
            .strip_prefix("pagemap-")
            .and_then(|n| n.strip_suffix(".img"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let entries = read_image(&entry.path(), PAGEMAP_MAGIC)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // The first entry is the head (which pages image goes with it).
        for e in entries.iter().skip(1) {
            // An entry it cannot read is not one it was asked for.
            let Ok(e) = PagemapEntry::of(e) else {
                continue;
            };
            if e.flags & PE_LAZY != 0 && e.pages > 0 {
                runs.push((pid, e.vaddr, e.pages));
            }
        }
    }
    runs.sort_unstable();
    Ok(runs)
}

/// Refuses a lazy dump the kernel's pipe size cap would break half-way.
pub fn check_pipe_max_size() -> Result<()> {
    let size = std::fs::read_to_string(PIPE_MAX_SIZE)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    pipe_size_ok(size)
}

fn pipe_size_ok(size: u64) -> Result<()> {
    if size >= MIN_PIPE_MAX_SIZE {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "post-copy needs fs.pipe-max-size >= {MIN_PIPE_MAX_SIZE} (it is {size}; CRIU's page pipes \
         are larger and a lazy dump would fail half-way): run `sysctl -w \
         fs.pipe-max-size={MIN_PIPE_MAX_SIZE}` (scripts/setup-host.sh does), or migrate with \
         --mode stopcopy"
    )))
}

/// A request for tests.
#[cfg(test)]
pub(crate) fn stand_in(port: u16, mode: PageMode) -> PageServer {
    PageServer::local(port, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_request_round_trips_privately() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PageServer::read(dir.path()).unwrap().is_none());
        let mut ps = stand_in(27000, PageMode::Lazy);
        ps.fetch_port = Some(27001);
        ps.write(dir.path()).unwrap();
        let mode = std::fs::metadata(control::request_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = PageServer::read(dir.path()).unwrap().unwrap();
        assert_eq!((back.address, back.port), (ps.address, 27000));
        assert!(back.address.is_loopback());
        // The receiver's lazy-pages daemon fetches from its own tunnel door.
        let req = back.daemon_request(dir.path(), dir.path());
        assert_eq!(req.port, 27001);
    }

    #[test]
    fn a_garbled_request_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(control::request_path(dir.path()), b"{").unwrap();
        let e = PageServer::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("lazarus-postcopy.json"), "{e}");
    }

    #[test]
    fn a_small_pipe_cap_is_refused_with_the_fix() {
        assert!(pipe_size_ok(MIN_PIPE_MAX_SIZE).is_ok());
        let e = pipe_size_ok(1 << 20).unwrap_err().to_string();
        assert!(e.contains("sysctl -w fs.pipe-max-size=4194304"), "{e}");
        assert!(e.contains("--mode stopcopy"), "{e}");
    }

    #[test]
    fn an_old_request_without_a_mode_is_post_copy() {
        let ps = stand_in(1, PageMode::Lazy);
        let mut v = serde_json::to_value(&ps).unwrap();
        assert_eq!(v["mode"], "lazy");
        v.as_object_mut().unwrap().remove("mode");
        let back: PageServer = serde_json::from_value(v).unwrap();
        assert_eq!(back.mode, PageMode::Lazy);
    }
}
