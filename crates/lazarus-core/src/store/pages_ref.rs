//! Store-backed checkpoints (config `docker_checkpoints = "store"`): the
//! page images of a checkpoint containerd and Docker copy (tarred into
//! containerd's content store, unpacked by dockerd, tarred and unpacked
//! again by `docker start --checkpoint`) go into this host's snapshot
//! store instead, and the image directory keeps only a small reference
//! ([`REF_FILE`]) naming the snapshot and every page image's size and
//! sha256. Whatever copies the directory copies a few hundred bytes for
//! the memory; a restore resolves the reference back into page images,
//! each read block by block against its digest and whole against the
//! reference.
//!
//! The reference is only good on the host whose store holds the snapshot:
//! elsewhere it is refused at once (before CRIU runs), with the way to
//! ship it named. Its own `check` (a sha256 of the rest) makes a damaged
//! or edited reference fail by name rather than as a missing file.

use std::fs;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{sync_dir, write_atomic, Snapshot, Store, SNAPSHOTS};
use crate::checkpoint::pages::{is_pages_image, page_images};
use crate::error::Error;
use crate::manifest::ManifestEntry;

/// The reference, in the image directory in place of the page images.
pub const REF_FILE: &str = "lazarus-store-ref.json";
pub const REF_FORMAT: u32 = 1;
/// A reference is small; anything bigger is not one.
const REF_MAX_BYTES: u64 = 1 << 20;
/// What the snapshot's record says it is (`info.kind`), so `lazarus
/// snapshots` tells these apart from the CLI's own.
pub const KIND: &str = "docker-checkpoint";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagesRef {
    pub format: u32,
    /// The snapshot (in this host's store) that holds the page images.
    pub snapshot: String,
    /// Who took it: `NAMESPACE/CONTAINER` (containerd's names).
    pub holder: String,
    /// The page images: names, sizes, sha256 sums.
    pub files: Vec<ManifestEntry>,
    /// sha256 (hex) of the reference with this field empty.
    pub check: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("{path}: not a Lazarus store reference ({why})")]
    Malformed { path: PathBuf, why: String },
    #[error(
        "{path}: a store reference of format {found}, newer than format {REF_FORMAT} that \
         this Lazarus reads: restore it with a newer Lazarus"
    )]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: the store reference does not match its check: it was changed or damaged")]
    Check { path: PathBuf },
    #[error(
        "checkpoint {images} is store-backed: its memory is snapshot {snapshot} in the Lazarus \
         store of the host that took it, and this host's store ({store}) does not have it. A \
         store-backed checkpoint does not leave its host by copying: on that host, export it \
         with `lazarus checkpoint --export FILE CONTAINER --from-docker-checkpoint NAME` and \
         restore the archive here with `lazarus restore --import FILE`"
    )]
    Missing {
        images: PathBuf,
        snapshot: String,
        store: PathBuf,
    },
    #[error(
        "checkpoint {images}: snapshot {snapshot} in {store} does not hold the page images its \
         reference lists ({why}): the store was changed since the checkpoint"
    )]
    Mismatch {
        images: PathBuf,
        snapshot: String,
        store: PathBuf,
        why: String,
    },
}

impl From<RefError> for Error {
    fn from(e: RefError) -> Error {
        match e {
            RefError::Missing { .. } => Error::FailedPrecondition(e.to_string()),
            _ => Error::InvalidArgument(e.to_string()),
        }
    }
}

impl PagesRef {
    fn digest(&self) -> String {
        let mut plain = self.clone();
        plain.check.clear();
        let json = serde_json::to_vec(&plain).expect("a reference serializes");
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn new(snapshot: &Snapshot, holder: &str) -> PagesRef {
        let mut r = PagesRef {
            format: REF_FORMAT,
            snapshot: snapshot.id.clone(),
            holder: holder.to_string(),
            files: snapshot.manifest.entries.clone(),
            check: String::new(),
        };
        r.check = r.digest();
        r
    }

    /// Parses and checks a reference read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<PagesRef, RefError> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let malformed = |why: String| RefError::Malformed {
            path: path.to_path_buf(),
            why,
        };
        let v: Version = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if v.format > REF_FORMAT {
            return Err(RefError::Format {
                path: path.to_path_buf(),
                found: v.format,
            });
        }
        let r: PagesRef = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if r.check != r.digest() {
            return Err(RefError::Check {
                path: path.to_path_buf(),
            });
        }
        // The names become files in an image directory.
        if let Some(bad) = r.files.iter().find(|f| !is_pages_image(&f.name) || f.dir) {
            return Err(malformed(format!("{:?} is not a page image", bad.name)));
        }
        if r.files.iter().any(|f| f.name.contains('/')) || !is_id(&r.snapshot) {
            return Err(malformed("a name that is not plain".into()));
        }
        Ok(r)
    }

    /// The reference in `images`, if it is store-backed.
    pub fn read(images: &Path) -> crate::error::Result<Option<PagesRef>> {
        let path = images.join(REF_FILE);
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("open {}", path.display()))(e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, REF_MAX_BYTES), &mut bytes)
            .map_err(Error::io(format!("read {}", path.display())))?;
        Ok(Some(PagesRef::parse(&path, &bytes)?))
    }

    /// Refuses at once a reference whose snapshot is not in the store at
    /// `store_root` (a copy from another host), or holds other files.
    /// Reads the store without making it.
    pub fn check_available(
        &self,
        store_root: &Path,
        images: &Path,
    ) -> crate::error::Result<Snapshot> {
        let dir = store_root.join(SNAPSHOTS);
        if !dir.join(format!("{}.json", self.snapshot)).is_file() {
            return Err(RefError::Missing {
                images: images.to_path_buf(),
                snapshot: self.snapshot.clone(),
                store: store_root.to_path_buf(),
            }
            .into());
        }
        let snapshot = Snapshot::read(&dir, &self.snapshot)?;
        if snapshot.manifest.entries != self.files {
            return Err(RefError::Mismatch {
                images: images.to_path_buf(),
                snapshot: self.snapshot.clone(),
                store: store_root.to_path_buf(),
                why: "other names, sizes or sums".into(),
            }
            .into());
        }
        Ok(snapshot)
    }

    /// Writes the page images back into `into` (0600, never over an
    /// existing file), each checked block by block and whole.
    pub fn resolve(
        &self,
        store_root: &Path,
        images: &Path,
        into: &Path,
    ) -> crate::error::Result<u64> {
        self.write_files(store_root, images, into, false)
    }

    /// Those page images `images` lacks (a stash undone halfway).
    fn resolve_missing(&self, store_root: &Path, images: &Path) -> crate::error::Result<u64> {
        self.write_files(store_root, images, images, true)
    }

    fn write_files(
        &self,
        store_root: &Path,
        images: &Path,
        into: &Path,
        only_missing: bool,
    ) -> crate::error::Result<u64> {
        let snapshot = self.check_available(store_root, images)?;
        let store = Store::open(store_root)?;
        let mut reader = store.reader(&snapshot)?;
        let mut total = 0;
        for f in &self.files {
            let path = into.join(&f.name);
            if only_missing && path.exists() {
                continue;
            }
            let context = format!("write {}", path.display());
            let out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(Error::io(&context))?;
            total += reader.write_file(&f.name, &out, super::pack::threads())?;
        }
        Ok(total)
    }
}

/// Refuses to use on its own a snapshot that holds a Docker checkpoint's
/// page images only (what `lazarus snapshot` takes is a whole checkpoint):
/// `what` is the refused use.
pub fn refuse_pages_only(s: &Snapshot, what: &str) -> crate::error::Result<()> {
    if s.info.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "snapshot {} holds only the page images of a store-backed Docker checkpoint of {}, \
         not a whole checkpoint: it cannot be {what} on its own. Export the checkpoint \
         itself: `lazarus checkpoint --export FILE CONTAINER --from-docker-checkpoint NAME`",
        s.id, s.container
    )))
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Moves the page images of the CRIU image directory `images` into the
/// store as a snapshot held by `holder`, and leaves the reference in their
/// place. Order for a crash: the snapshot is committed, then the reference
/// written, then the page images removed; a crash in between leaves a
/// directory that restores either way (the pages are still there) and, at
/// worst, a snapshot no reference names (listed by `lazarus snapshots`).
///
/// `docker_dir` is the container's directory in Docker's data root
/// (`DATA_ROOT/containers/ID`), where Docker keeps its copy of the
/// reference: the release ([`super::release`]) looks for holders there.
pub fn stash(
    store: &Store,
    images: &Path,
    holder: &str,
    docker_dir: Option<&Path>,
) -> crate::error::Result<PagesRef> {
    let names = page_images(images)?;
    let mut writer = store.writer()?;
    writer.ingest_files(images, &names)?;
    let mut info = serde_json::json!({ "kind": KIND, "holder": holder });
    if let Some(d) = docker_dir {
        info[super::release::DOCKER_DIR] = d.to_string_lossy().into_owned().into();
    }
    let snapshot = writer.commit(holder, None, info)?;
    let r = PagesRef::new(&snapshot, holder);
    let json = serde_json::to_vec_pretty(&r).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&images.join(REF_FILE), &json)?;
    sync_dir(images)?;
    for n in &names {
        let p = images.join(n);
        if let Err(e) = fs::remove_file(&p) {
            // Back to a plain checkpoint: its pages are all still there
            // but those removed, which the store holds; put them back.
            let undone = r.resolve_missing(store.root(), images);
            let _ = fs::remove_file(images.join(REF_FILE));
            undone?;
            return Err(Error::io(format!("remove {}", p.display()))(e));
        }
    }
    sync_dir(images)?;
    Ok(r)
}
