//! A group archive: the archives of several containers checkpointed at one
//! instant (`lazarus checkpoint --group`), as one file. It is a plain tar
//! (each member archive is compressed already) whose first entry is the
//! index, `lazarus-group.json`, with the size and sha256 of every member;
//! the members follow as `members/<n>-<name>.tar`. A reader checks each
//! member against the index as it streams by, and refuses anything the
//! index does not name, so a damaged group is refused before any member is
//! restored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::atomic::AtomicFile;
use super::hashing::hash_copy;
use crate::error::{Error, Result};

/// The index's name, and the group format it declares.
pub const GROUP_INDEX: &str = "lazarus-group.json";
pub const GROUP_FORMAT: &str = "lazarus-group/1";
const MEMBERS_DIR: &str = "members";

/// The index of a group archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupIndex {
    pub format: String,
    /// When the group was frozen (every member's dump ran after this).
    pub frozen_at: DateTime<Utc>,
    /// Whether the members were left running after the checkpoint.
    pub left_running: bool,
    pub members: Vec<GroupMember>,
}

/// One member: what it was, and its archive's entry in the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub name: String,
    pub id: String,
    /// `docker` or `containerd`.
    pub engine: String,
    pub namespace: String,
    /// The member archive's entry name, `members/<n>-<name>.tar`.
    pub entry: String,
    pub size: u64,
    pub sha256: String,
}

/// What goes into a group: a member's record and its archive file.
pub struct MemberArchive<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub engine: &'a str,
    pub namespace: &'a str,
    pub archive: &'a Path,
}

/// Whether `path` is a group archive (its first entry is the index).
/// False for anything else, a single container's archive included.
pub fn is_group(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut tar = tar::Archive::new(BufReader::new(file));
    let Ok(mut entries) = tar.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(e)) if e.path().is_ok_and(|p| p == Path::new(GROUP_INDEX)))
}

/// Writes the group atomically to `dest` (mode 0600) and returns its index.
pub fn write_group(
    members: &[MemberArchive],
    frozen_at: DateTime<Utc>,
    left_running: bool,
    dest: &Path,
) -> Result<GroupIndex> {
    let mut index = GroupIndex {
        format: GROUP_FORMAT.to_string(),
        frozen_at,
        left_running,
        members: Vec::with_capacity(members.len()),
    };
    for (n, m) in members.iter().enumerate() {
        let mut f =
            File::open(m.archive).map_err(Error::io(format!("open {}", m.archive.display())))?;
        let (size, sha256) = hash_copy(&mut f, &mut io::sink(), &mut |_| {})
            .map_err(Error::io(format!("read {}", m.archive.display())))?;
        index.members.push(GroupMember {
            name: m.name.to_string(),
            id: m.id.to_string(),
            engine: m.engine.to_string(),
            namespace: m.namespace.to_string(),
            entry: format!("{MEMBERS_DIR}/{n}-{}.tar", safe_name(m.name)),
            size,
            sha256,
        });
    }
    let context = format!("write group archive {}", dest.display());
    let tmp = AtomicFile::beside(dest, ".lazarus-group-", &context)?;
    let out = BufWriter::with_capacity(
        1 << 20,
        tmp.as_file().try_clone().map_err(Error::io(&context))?,
    );
    let mut tar = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(&index).expect("the index serialises");
    append(
        &mut tar,
        GROUP_INDEX,
        json.len() as u64,
        &mut json.as_slice(),
    )
    .map_err(Error::io(&context))?;
    for (m, record) in members.iter().zip(&index.members) {
        let mut f =
            File::open(m.archive).map_err(Error::io(format!("open {}", m.archive.display())))?;
        append(&mut tar, &record.entry, record.size, &mut f).map_err(Error::io(&context))?;
    }
    let out = tar.into_inner().map_err(Error::io(&context))?;
    // Flushed into the temporary file (the writer holds a clone of it).
    out.into_inner()
        .map_err(|e| Error::io(&context)(e.into_error()))?;
    tmp.persist(dest, &context)?;
    Ok(index)
}

fn append(
    tar: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, name, data)
}

/// A member's name as a file name: anything but `[A-Za-z0-9_.-]` becomes `_`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// Extracts the group at `path` into `dir` (created 0700; member archives
/// 0600), each member checked against the index on the way; returns the
/// index and each member's extracted file, in the index's order.
pub fn extract_group(path: &Path, dir: &Path) -> Result<(GroupIndex, Vec<PathBuf>)> {
    let what = path.display().to_string();
    let bad =
        |why: String| Error::InvalidArgument(format!("{what} is not a valid group archive: {why}"));
    let file = File::open(path).map_err(Error::io(format!("open {what}")))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let mut entries = tar.entries().map_err(Error::io(format!("read {what}")))?;
    let index: GroupIndex = match entries.next() {
        Some(Ok(mut e)) if e.path().is_ok_and(|p| p == Path::new(GROUP_INDEX)) => {
            let mut json = Vec::new();
            e.by_ref()
                .take(1 << 20)
                .read_to_end(&mut json)
                .map_err(Error::io(format!("read {what}")))?;
            serde_json::from_slice(&json).map_err(|e| bad(format!("{GROUP_INDEX}: {e}")))?
        }
        _ => return Err(bad(format!("its first entry is not {GROUP_INDEX}"))),
    };
    if index.format != GROUP_FORMAT {
        return Err(bad(format!(
            "format {:?}, this Lazarus reads {GROUP_FORMAT:?} (a newer Lazarus wrote it?)",
            index.format
        )));
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("create {}", dir.display())))?;
    let mut extracted: Vec<Option<PathBuf>> = vec![None; index.members.len()];
    for entry in entries {
        let mut e = entry.map_err(Error::io(format!("read {what}")))?;
        let name = e
            .path()
            .map_err(Error::io(format!("read {what}")))?
            .to_string_lossy()
            .into_owned();
        let Some(n) = index.members.iter().position(|m| m.entry == name) else {
            return Err(bad(format!("entry {name:?} is not in its index")));
        };
        if extracted[n].is_some() {
            return Err(bad(format!("entry {name:?} appears twice")));
        }
        let member = &index.members[n];
        let out_path = dir.join(format!("{n}.tar"));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&out_path)
            .map_err(Error::io(format!("create {}", out_path.display())))?;
        let (size, sha256) =
            hash_copy(&mut e, &mut out, &mut |_| {}).map_err(Error::io(format!("read {what}")))?;
        if size != member.size || sha256 != member.sha256 {
            return Err(bad(format!(
                "member {} is damaged ({size} bytes, sha256 {sha256}; the index says {} bytes, {})",
                member.name, member.size, member.sha256
            )));
        }
        extracted[n] = Some(out_path);
    }
    let files = extracted
        .into_iter()
        .zip(&index.members)
        .map(|(f, m)| f.ok_or_else(|| bad(format!("member {} ({}) is missing", m.name, m.entry))))
        .collect::<Result<Vec<_>>>()?;
    Ok((index, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn member_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn two(dir: &Path) -> (PathBuf, PathBuf) {
        (
            member_file(dir, "a.tar", b"first member's archive"),
            member_file(dir, "b.tar", &vec![7u8; 300_000]),
        )
    }

    fn write_two(dir: &Path) -> PathBuf {
        let (a, b) = two(dir);
        let dest = dir.join("group.tar");
        let members = [
            MemberArchive {
                name: "app",
                id: "1",
                engine: "docker",
                namespace: "moby",
                archive: &a,
            },
            MemberArchive {
                name: "db/x",
                id: "2",
                engine: "containerd",
                namespace: "default",
                archive: &b,
            },
        ];
        write_group(&members, Utc::now(), true, &dest).unwrap();
        dest
    }

    #[test]
    fn a_group_round_trips_with_its_members_intact() {
        let t = tempfile::tempdir().unwrap();
        let dest = write_two(t.path());
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(is_group(&dest));
        assert!(!is_group(&t.path().join("a.tar")));
        let (index, files) = extract_group(&dest, &t.path().join("out")).unwrap();
        assert_eq!(index.members.len(), 2);
        assert_eq!(index.members[1].entry, "members/1-db_x.tar");
        assert!(index.left_running);
        assert_eq!(fs::read(&files[0]).unwrap(), b"first member's archive");
        assert_eq!(fs::read(&files[1]).unwrap(), vec![7u8; 300_000]);
        let mode = fs::metadata(&files[1]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_damaged_member_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let dest = write_two(t.path());
        let mut bytes = fs::read(&dest).unwrap();
        // The second member's data: a run of 7s well inside the file.
        let at = bytes
            .windows(64)
            .position(|w| w.iter().all(|&b| b == 7))
            .unwrap()
            + 1000;
        bytes[at] ^= 0xff;
        fs::write(&dest, &bytes).unwrap();
        let err = extract_group(&dest, &t.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("member db/x is damaged"), "{err}");
    }

    #[test]
    fn a_truncated_group_is_refused_naming_the_missing_member() {
        let t = tempfile::tempdir().unwrap();
        let dest = write_two(t.path());
        let bytes = fs::read(&dest).unwrap();
        // Cut inside the second member: tar reports the short read.
        fs::write(&dest, &bytes[..bytes.len() - 200_000]).unwrap();
        assert!(extract_group(&dest, &t.path().join("out")).is_err());
        // Cut right before the second member's header (its name's last
        // occurrence; the first is in the index): it is missing.
        let second = bytes
            .windows(18)
            .rposition(|w| w == b"members/1-db_x.tar")
            .unwrap();
        fs::write(&dest, &bytes[..second]).unwrap();
        let err = extract_group(&dest, &t.path().join("out2"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("member db/x (members/1-db_x.tar) is missing"),
            "{err}"
        );
    }

    #[test]
    fn a_single_archive_or_garbage_is_not_a_group() {
        let t = tempfile::tempdir().unwrap();
        let junk = member_file(t.path(), "junk", b"not a tar at all");
        assert!(!is_group(&junk));
        let err = extract_group(&junk, &t.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid group archive"), "{err}");
    }
}
