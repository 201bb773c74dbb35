//! The record of a `checkpoint --all` (`DIR/lazarus-all.json`, 0600):
//! every container that was checkpointed, in the order `restore --all`
//! brings them back, with what is needed to bring each back as it was
//! (its archive, and what the archive does not say: its Docker restart
//! policy, cleared for the checkpoint) and how far its restore got.
//!
//! Written atomically (a temporary file renamed into place) after every
//! change, so a killed `restore --all` leaves a record the next run
//! finishes from.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::platform::Platform;
use crate::error::{Error, Result};

/// The record's name in the checkpoint directory.
pub const RECORD: &str = "lazarus-all.json";
/// What the record is renamed to once every container runs again.
pub const RESTORED_RECORD: &str = "lazarus-all.restored.json";
/// The record's format; a newer one is refused.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub host: String,
    pub checkpointed_at: DateTime<Utc>,
    /// The kernel release and CRIU version the images were taken on
    /// (`restore --all` compares; an older record has none).
    #[serde(default)]
    pub platform: Platform,
    /// In restore order.
    pub entries: Vec<Entry>,
}

/// One checkpointed container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Restore order, from 0.
    pub order: usize,
    /// "docker" or "containerd".
    pub engine: String,
    pub namespace: String,
    pub name: String,
    /// The id it had when checkpointed.
    pub id: String,
    /// The archive's file name in the directory (a group's members share
    /// their group archive).
    pub archive: String,
    /// Store-backed sets: the snapshot holding its checkpoint (then
    /// `archive` is empty; a group's members share their group archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub image: String,
    /// Docker networks and the fixed addresses (--ip) on them.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Volumes and bind mounts: their contents stay on this host.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Docker's restart policy before the checkpoint (cleared for it, put
    /// back after the restore); None when there was none.
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// The Compose project whose members were checkpointed together.
    #[serde(default)]
    pub group: Option<String>,
    pub state: State,
    /// When a restore of it was last begun: a container made after this
    /// under its name is that restore's.
    #[serde(default)]
    pub restore_started_at: Option<DateTime<Utc>>,
    /// The id of the container the restore made.
    #[serde(default)]
    pub restored_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    #[serde(default)]
    pub fixed_ipv4: Option<String>,
    #[serde(default)]
    pub fixed_ipv6: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// "volume" or "bind".
    pub kind: String,
    /// The volume's name, or the host path of a bind mount.
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub name: String,
    #[serde(default)]
    pub maximum_retry_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In its archive, waiting to be restored.
    Checkpointed,
    /// Running again.
    Restored,
}

impl Record {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(RECORD)
    }

    /// Reads `DIR/lazarus-all.json`.
    pub fn read(dir: &Path) -> Result<Record> {
        let path = Record::path(dir);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if dir.join(RESTORED_RECORD).exists() => {
                Error::NotFound(format!(
                    "{} has no {RECORD}: every container of its set was restored already (see \
                     {})",
                    dir.display(),
                    dir.join(RESTORED_RECORD).display()
                ))
            }
            std::io::ErrorKind::NotFound => Error::NotFound(format!(
                "{} holds no set `checkpoint --all` recorded (no {RECORD}): take one with \
                 `lazarus checkpoint --all`, or name the directory `checkpoint --all \
                 --export-dir` wrote with --import-dir",
                dir.display()
            )),
            _ => Error::Core(lazarus_core::Error::io(format!("read {}", path.display()))(
                e,
            )),
        })?;
        Record::parse(&bytes, &path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Record> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| {
            Error::Refused(format!(
                "{} is not a record `checkpoint --all` writes: {e}",
                path.display()
            ))
        })?;
        if record.format > FORMAT {
            return Err(Error::Refused(format!(
                "{} is of record format {}, newer than this lazarus reads ({FORMAT})",
                path.display(),
                record.format
            )));
        }
        Ok(record)
    }

    /// Writes it atomically, mode 0600.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Record::path(dir);
        let tmp = dir.join(format!(".{RECORD}.tmp"));
        let io = |what: &str| lazarus_core::Error::io(format!("{what} {}", path.display()));
        let bytes = serde_json::to_vec_pretty(self).expect("the record serializes");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("write"))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io("write"))?;
        fs::rename(&tmp, &path).map_err(io("write"))?;
        Ok(())
    }

    /// Every container runs again: the record becomes
    /// `lazarus-all.restored.json`.
    pub fn retire(dir: &Path) -> Result<()> {
        let path = Record::path(dir);
        fs::rename(&path, dir.join(RESTORED_RECORD)).map_err(lazarus_core::Error::io(format!(
            "rename {}",
            path.display()
        )))?;
        Ok(())
    }

    /// The entries still to restore.
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.state == State::Checkpointed)
    }

    /// The restore's units in order: each group's members together (at
    /// its first member's place), every other entry alone.
    pub fn units(&self) -> Vec<Vec<&Entry>> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|e| e.order);
        let mut units: Vec<Vec<&Entry>> = Vec::new();
        for e in entries {
            let joined = e.group.as_ref().and_then(|g| {
                units.iter_mut().find(|u| {
                    u[0].group.as_ref() == Some(g)
                        && u[0].engine == e.engine
                        && u[0].archive == e.archive
                })
            });
            match joined {
                Some(u) => u.push(e),
                None => units.push(vec![e]),
            }
        }
        units
    }

    pub fn entry_mut(&mut self, engine: &str, namespace: &str, name: &str) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|e| e.engine == engine && e.namespace == namespace && e.name == name)
    }
}

/// Makes the checkpoint directory (0700; an existing one is made 0700).
/// A record there whose containers are not all back yet (a restore that
/// failed for some) is not overwritten, nor its archives: that set is
/// moved into `DIR/unrestored-<time>/` (restore it from there), and its
/// new place is returned for the report. A shutdown's checkpoint must not
/// be refused over it.
pub fn prepare_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let io = |what: &str| lazarus_core::Error::io(format!("{what} {}", dir.display()));
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create"))?;
    }
    if !dir.is_dir() {
        return Err(Error::Refused(format!(
            "{} is not a directory: --export-dir names the directory the archives go into",
            dir.display()
        )));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("chmod"))?;
    if !Record::path(dir).exists() {
        return Ok(None);
    }
    let record = Record::read(dir)?;
    if record.pending().count() == 0 {
        return Ok(None);
    }
    let aside = dir.join(format!(
        "unrestored-{}",
        record.checkpointed_at.format("%Y%m%dT%H%M%S")
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&aside)
        .map_err(lazarus_core::Error::io(format!(
            "create {}",
            aside.display()
        )))?;
    let mut files: Vec<&str> = record.entries.iter().map(|e| e.archive.as_str()).collect();
    files.sort();
    files.dedup();
    files.push(RECORD);
    for f in files {
        let from = dir.join(f);
        if from.exists() {
            fs::rename(&from, aside.join(f)).map_err(lazarus_core::Error::io(format!(
                "move {} into {}",
                from.display(),
                aside.display()
            )))?;
        }
    }
    Ok(Some(aside))
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(order: usize, name: &str, group: Option<&str>) -> Entry {
        Entry {
            order,
            engine: "docker".into(),
            namespace: "moby".into(),
            name: name.into(),
            id: format!("{name}-id"),
            archive: match group {
                Some(g) => format!("compose-{g}.tar.zst"),
                None => format!("docker-{name}.tar.zst"),
            },
            snapshot: None,
            image: "busybox".into(),
            networks: vec![Network {
                name: "front".into(),
                fixed_ipv4: Some("10.9.0.5".into()),
                fixed_ipv6: None,
            }],
            volumes: vec![Volume {
                kind: "volume".into(),
                source: "data".into(),
                destination: "/data".into(),
            }],
            restart_policy: Some(RestartPolicy {
                name: "always".into(),
                maximum_retry_count: 0,
            }),
            group: group.map(str::to_string),
            state: State::Checkpointed,
            restore_started_at: None,
            restored_id: None,
        }
    }

    fn record(entries: Vec<Entry>) -> Record {
        Record {
            format: FORMAT,
            host: "node1".into(),
            checkpointed_at: Utc::now(),
            platform: Platform::default(),
            entries,
        }
    }

    #[test]
    fn the_record_round_trips_through_its_file_0600() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record(vec![entry(0, "a", None), entry(1, "b", Some("shop"))]);
        r.entries[1].state = State::Restored;
        r.entries[1].restored_id = Some("new".into());
        r.write(dir.path()).unwrap();
        let mode = fs::metadata(Record::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Record::read(dir.path()).unwrap(), r);
        // Written again in place (no temporary file left).
        r.write(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_newer_or_foreign_record_is_refused() {
        let mut r = record(vec![]);
        r.format = FORMAT + 1;
        let bytes = serde_json::to_vec(&r).unwrap();
        let e = Record::parse(&bytes, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("newer"), "{e}");
        let e = Record::parse(b"{}", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a record"), "{e}");
    }

    #[test]
    fn units_keep_the_order_and_put_a_group_together() {
        let r = record(vec![
            entry(2, "c", None),
            entry(0, "web", Some("shop")),
            entry(1, "a", None),
            entry(3, "db", Some("shop")),
        ]);
        let units: Vec<Vec<&str>> = r
            .units()
            .iter()
            .map(|u| u.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(units, [vec!["web", "db"], vec!["a"], vec!["c"]]);
    }

    #[test]
    fn a_set_still_to_restore_is_moved_aside_whole_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cp");
        assert_eq!(prepare_dir(&d).unwrap(), None);
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut r = record(vec![entry(0, "a", None), entry(1, "b", None)]);
        r.entries[0].state = State::Restored;
        r.write(&d).unwrap();
        for e in &r.entries {
            fs::write(d.join(&e.archive), e.name.as_bytes()).unwrap();
        }
        fs::write(d.join("someone-elses"), b"x").unwrap();
        let aside = prepare_dir(&d).unwrap().expect("moved aside");
        assert!(aside.starts_with(&d));
        assert_eq!(Record::read(&aside).unwrap(), r);
        assert_eq!(fs::read(aside.join("docker-b.tar.zst")).unwrap(), b"b");
        assert!(!Record::path(&d).exists());
        assert!(
            d.join("someone-elses").exists(),
            "only the set's files move"
        );
        // A set all back is simply replaced.
        r.entries[1].state = State::Restored;
        r.write(&d).unwrap();
        assert_eq!(prepare_dir(&d).unwrap(), None);
    }

    #[test]
    fn a_retired_record_says_so() {
        let dir = tempfile::tempdir().unwrap();
        record(vec![]).write(dir.path()).unwrap();
        Record::retire(dir.path()).unwrap();
        let e = Record::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("restored already"), "{e}");
    }
}
