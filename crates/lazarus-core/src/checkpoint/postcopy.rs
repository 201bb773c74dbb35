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
//! directory, written by `lazarus migrate` before the dump; the same file
//! travels in the archive and tells the destination's restore where a lazy
//! memory is. The page stream is CRIU's own protocol under mutual TLS with
//! a one-time CA: CRIU's lazy page server listens on every address, so a
//! peer without the migration's certificate must get nothing but a failed
//! handshake.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// In the image directory: where the memory is served from.
pub const REQUEST_FILE: &str = "lazarus-postcopy.json";
/// In the image directory: written by the migrating client to call a
/// post-copy dump off before the destination runs (CRIU is stopped and the
/// container thawed, running on where it was).
pub const CANCEL_FILE: &str = "lazarus-postcopy.cancel";
/// In the image directory: written by the runtime when the post-copy dump
/// has ended (every page sent, or called off and the container thawed),
/// holding how it ended; the client waits for it before it lets go.
pub const ENDED_FILE: &str = "lazarus-postcopy.ended";
/// In the image directory: written by the migrating client once the
/// destination runs the container, to let a push dump's source end (until
/// then it waits frozen, and is resumed if the dump is called off).
pub const RELEASE_FILE: &str = "lazarus-postcopy.release";
/// In the image directory: renewed by the migrating client every
/// [`LEASE_RENEW`] while the dump may need it. A client that dies (killed
/// mid-migration) stops renewing it, and a dump whose lease is older than
/// [`LEASE_TIMEOUT`] is called off: the source does not stay frozen for
/// CRIU's whole deadline on behalf of nobody.
pub const LEASE_FILE: &str = "lazarus-postcopy.lease";
pub const LEASE_RENEW: Duration = Duration::from_secs(2);
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(30);
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

/// The page server, as its client reaches it, and the migration's TLS
/// material (the same certificate serves both ends; it is signed by a CA
/// that exists for this one migration).
#[derive(Clone, Serialize, Deserialize)]
pub struct PageServer {
    pub address: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub mode: PageMode,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PageServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "PageServer({}:{})", self.address, self.port)
    }
}

/// The TLS files CRIU reads, written private into a work directory and
/// removed when dropped.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        for f in [&self.ca, &self.cert, &self.key] {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl PageServer {
    /// A page server at `address:port` with fresh TLS material: a CA, and a
    /// certificate for `address` it signed.
    pub fn generate(address: IpAddr, port: u16) -> Result<PageServer> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let tls =
            |e: rcgen::Error| Error::Other(format!("make the page stream's certificate: {e}"));
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "lazarus migration CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        let key = KeyPair::generate().map_err(tls)?;
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CommonName, "lazarus migration");
        leaf.subject_alt_names = vec![SanType::IpAddress(address)];
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(tls)?;
        Ok(PageServer {
            address,
            port,
            mode: PageMode::Lazy,
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The request in `images`, if the checkpoint is a post-copy one.
    pub fn read(images: &Path) -> Result<Option<PageServer>> {
        let path = images.join(REQUEST_FILE);
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
        write_private(&images.join(REQUEST_FILE), &serde_json::to_vec(self)?)
    }

    /// Writes the TLS files CRIU needs into `dir`.
    pub fn tls_files(&self, dir: &Path) -> Result<TlsFiles> {
        let files = TlsFiles {
            ca: dir.join("lazarus-tls-ca.pem"),
            cert: dir.join("lazarus-tls-cert.pem"),
            key: dir.join("lazarus-tls-key.pem"),
        };
        for (path, pem) in [
            (&files.ca, &self.ca_pem),
            (&files.cert, &self.cert_pem),
            (&files.key, &self.key_pem),
        ] {
            let _ = std::fs::remove_file(path);
            write_private(path, pem.as_bytes())?;
        }
        Ok(files)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(Error::io(format!("write {}", path.display())))
}

/// The client's and the runtime's files above, which a failed dump leaves
/// where they are.
pub fn is_control_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        [
            REQUEST_FILE,
            CANCEL_FILE,
            ENDED_FILE,
            LEASE_FILE,
            RELEASE_FILE,
        ]
        .iter()
        .any(|f| n == *f)
    })
}

/// CRIU's pagemap image magic, and its flag for pages left to the page
/// server (criu/include/magic.h, pagemap.h).
const PAGEMAP_MAGIC: u32 = 0x5608_4025;
const PE_LAZY: u64 = 1 << 1;
const PAGE_SIZE: u64 = 4096;

/// The memory a post-copy dump left to its page server: the pages its
/// pagemaps mark lazy. (CRIU's own dump statistics cannot say: its page
/// server resets them before it writes them.)
pub fn lazy_bytes(images: &Path) -> Result<u64> {
    use crate::inspect::criu_images::read_image;
    let mut pages = 0;
    let dir = std::fs::read_dir(images).map_err(Error::io(format!("read {}", images.display())))?;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("pagemap-") && name.ends_with(".img")) {
            continue;
        }
        let entries = read_image(&entry.path(), PAGEMAP_MAGIC)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // The first entry is the head (which pages image goes with it).
        for e in entries.iter().skip(1) {
            let flags = e.varint(4, "flags").ok().flatten().unwrap_or(0);
            if flags & PE_LAZY == 0 {
                continue;
            }
            let n = match e.varint(5, "nr_pages").ok().flatten() {
                Some(n) => n,
                None => e.varint(2, "compat_nr_pages").ok().flatten().unwrap_or(0),
            };
            pages += n;
        }
    }
    Ok(pages * PAGE_SIZE)
}

/// The client's lease on a post-copy dump (see [`LEASE_FILE`]), renewed by
/// a thread of its own until dropped. The client also writes it with the
/// request ([`write_lease`]), so a dump never runs without one; the thread
/// renews it once the image directory exists.
pub struct Lease {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    pub fn hold(images: &Path) -> Lease {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, images) = (stop.clone(), images.to_path_buf());
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            let mut since = LEASE_RENEW;
            while !flag.load(Ordering::Relaxed) {
                if since >= LEASE_RENEW {
                    let _ = write_lease(&images);
                    since = Duration::ZERO;
                }
                std::thread::sleep(tick);
                since += tick;
            }
        });
        Lease {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates the lease in `images` or moves its time to now.
pub fn write_lease(images: &Path) -> Result<()> {
    let path = images.join(LEASE_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(Error::io(format!("write {}", path.display())))
}

/// The client's lease has lapsed: it was taken and not renewed for
/// [`LEASE_TIMEOUT`]. (No lease at all is a client that takes none.)
pub fn lease_lapsed(images: &Path) -> bool {
    std::fs::metadata(images.join(LEASE_FILE))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > LEASE_TIMEOUT)
}

/// Calls a post-copy dump off (see [`CANCEL_FILE`]).
pub fn cancel(images: &Path) -> Result<()> {
    let path = images.join(CANCEL_FILE);
    std::fs::write(&path, b"").map_err(Error::io(format!("write {}", path.display())))
}

pub fn cancelled(images: &Path) -> bool {
    images.join(CANCEL_FILE).exists()
}

/// Lets a push dump's source end (see [`RELEASE_FILE`]).
pub fn release(images: &Path) -> Result<()> {
    let path = images.join(RELEASE_FILE);
    std::fs::write(&path, b"").map_err(Error::io(format!("write {}", path.display())))
}

pub fn released(images: &Path) -> bool {
    images.join(RELEASE_FILE).exists()
}

/// How often a push dump, frozen at its post-dump notification, looks for
/// its client's word.
const DECISION_POLL: Duration = Duration::from_millis(20);

/// The longest a push dump waits for its client's word at post-dump, as
/// long as CRIU's own default deadline: a client that keeps its lease but
/// never says (a receiver's restore taking longer than this) gets its
/// source back, resumed, rather than a source frozen for ever.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(600);

/// A push dump's wait at CRIU's post-dump notification (every page is at
/// the destination): Ok once released, an error once called off
/// (`called_off`: the cancel file, or a lapsed lease) or after `timeout`.
/// CRIU kills the tree after Ok and resumes it after an error.
pub fn await_release(
    images: &Path,
    called_off: &dyn Fn() -> bool,
    timeout: Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if released(images) {
            return Ok(());
        }
        if called_off() {
            return Err(Error::Other(
                "the migration was called off before the destination ran the container".into(),
            ));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "the migration's client neither released nor called off the dump within \
                 {timeout:?}"
            )));
        }
        std::thread::sleep(DECISION_POLL);
    }
}

/// Says the dump has ended (see [`ENDED_FILE`]). Best effort: a client
/// that went away took the directory with it.
pub fn say_ended(images: &Path, how: &str) {
    let _ = std::fs::write(images.join(ENDED_FILE), how);
}

/// How the dump ended, once it has.
pub fn ended(images: &Path) -> Option<String> {
    std::fs::read_to_string(images.join(ENDED_FILE)).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_request_round_trips_privately_and_hides_its_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PageServer::read(dir.path()).unwrap().is_none());
        let ps = PageServer::generate("10.0.0.1".parse().unwrap(), 27000).unwrap();
        assert!(ps.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ps.key_pem.contains("PRIVATE KEY"));
        ps.write(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(REQUEST_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = PageServer::read(dir.path()).unwrap().unwrap();
        assert_eq!((back.address, back.port), (ps.address, 27000));
        assert_eq!(back.key_pem, ps.key_pem);
        assert!(!format!("{back:?}").contains("KEY"));
        let files = back.tls_files(dir.path()).unwrap();
        let key = files.key.clone();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(files);
        assert!(!key.exists(), "TLS files go with their handle");
    }

    #[test]
    fn two_migrations_never_share_a_key() {
        let a = PageServer::generate("10.0.0.1".parse().unwrap(), 1).unwrap();
        let b = PageServer::generate("10.0.0.1".parse().unwrap(), 1).unwrap();
        assert_ne!(a.key_pem, b.key_pem);
        assert_ne!(a.ca_pem, b.ca_pem);
    }

    #[test]
    fn a_garbled_request_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REQUEST_FILE), b"{").unwrap();
        let e = PageServer::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(REQUEST_FILE), "{e}");
    }

    #[test]
    fn a_small_pipe_cap_is_refused_with_the_fix() {
        assert!(pipe_size_ok(MIN_PIPE_MAX_SIZE).is_ok());
        let e = pipe_size_ok(1 << 20).unwrap_err().to_string();
        assert!(e.contains("sysctl -w fs.pipe-max-size=4194304"), "{e}");
        assert!(e.contains("--mode stopcopy"), "{e}");
    }

    #[test]
    fn a_held_lease_is_renewed_and_an_old_one_lapses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!lease_lapsed(dir.path()), "no lease is not a lapsed one");
        let lease = Lease::hold(dir.path());
        let path = dir.path().join(LEASE_FILE);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "no lease file");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!lease_lapsed(dir.path()));
        drop(lease);
        // As a client dead for longer than the timeout leaves it.
        let old = SystemTime::now() - LEASE_TIMEOUT - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(lease_lapsed(dir.path()));
        assert!(is_control_file(&path));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_push_dump_waits_for_release_or_call_off() {
        let dir = tempfile::tempdir().unwrap();
        let e = await_release(dir.path(), &|| true, RELEASE_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("called off"), "{e}");
        // Neither word: not for ever.
        let e = await_release(dir.path(), &|| false, Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("neither released"), "{e}");
        release(dir.path()).unwrap();
        assert!(is_control_file(&dir.path().join(RELEASE_FILE)));
        // Released wins over a call-off that came later.
        assert!(await_release(dir.path(), &|| true, RELEASE_TIMEOUT).is_ok());
        let later = tempfile::tempdir().unwrap();
        let path = later.path().to_path_buf();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            release(&path).unwrap();
        });
        assert!(await_release(later.path(), &|| false, RELEASE_TIMEOUT).is_ok());
        t.join().unwrap();
    }

    #[test]
    fn an_old_request_without_a_mode_is_post_copy() {
        let ps = PageServer::generate("10.0.0.1".parse().unwrap(), 1).unwrap();
        let mut v = serde_json::to_value(&ps).unwrap();
        assert_eq!(v["mode"], "lazy");
        v.as_object_mut().unwrap().remove("mode");
        let back: PageServer = serde_json::from_value(v).unwrap();
        assert_eq!(back.mode, PageMode::Lazy);
    }

    #[test]
    fn cancel_and_end_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!cancelled(dir.path()));
        cancel(dir.path()).unwrap();
        assert!(cancelled(dir.path()));
        assert!(is_control_file(&dir.path().join(CANCEL_FILE)));
        assert!(!is_control_file(&dir.path().join("pages-1.img")));
        assert_eq!(ended(dir.path()), None);
        say_ended(dir.path(), "resumed");
        assert_eq!(ended(dir.path()).as_deref(), Some("resumed"));
    }
}
