//! A snapshot's record (`snapshots/ID.json`) and block list
//! (`snapshots/ID.blocks`: every file's block digests, end to end).

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pack::Digest;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub format: u32,
    pub id: String,
    /// The container's name when it was taken (what `snapshots C` lists).
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub created: DateTime<Utc>,
    /// The packs its blocks are in.
    pub packs: Vec<String>,
    /// Bytes this snapshot added to the store (its new pack).
    pub bytes_added: u64,
    /// Bytes of the checkpoint it holds (what an archive of it unpacks to).
    pub bytes_referenced: u64,
    pub blocks: u64,
    pub new_blocks: u64,
    pub zero_blocks: u64,
    /// The checkpoint archive's manifest: names, sizes, sha256 sums.
    pub manifest: Manifest,
    /// Which blocks (of the block list) make each file, in manifest order.
    pub entries: Vec<EntryBlocks>,
    /// The sha256 of the block list. With it, a read checks the list once
    /// and every block against its digest, and needs no second pass over
    /// each file for its sum (records written before it had none: their
    /// files are checked whole, as then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_sha256: Option<String>,
    /// The front door's description: engine, container id, how long the
    /// container was frozen, its processes.
    #[serde(default)]
    pub info: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryBlocks {
    pub name: String,
    pub first: u64,
    pub count: u64,
}

impl Snapshot {
    pub fn read(dir: &Path, id: &str) -> Result<Snapshot> {
        let path = dir.join(format!("{id}.json"));
        let bytes = fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
        let s: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!("{} is not a snapshot record: {e}", path.display()))
        })?;
        if s.format != FORMAT || s.id != id {
            return Err(Error::InvalidArgument(format!(
                "{} is a snapshot of format {} (this Lazarus reads {FORMAT}) or of another id",
                path.display(),
                s.format
            )));
        }
        Ok(s)
    }

    /// The block list, checked against the record.
    pub fn block_list(&self, dir: &Path) -> Result<Vec<Digest>> {
        let path = dir.join(format!("{}.blocks", self.id));
        let bytes = fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
        if let Some(want) = &self.blocks_sha256 {
            if &list_sha256(&bytes) != want {
                return Err(Error::InvalidArgument(format!(
                    "{} does not match the sum snapshot {} recorded (damaged); the snapshot \
                     cannot be restored",
                    path.display(),
                    self.id
                )));
            }
        }
        if bytes.len() as u64 != self.blocks * 32 {
            return Err(Error::InvalidArgument(format!(
                "{} holds {} bytes, not the {} blocks snapshot {} has (damaged)",
                path.display(),
                bytes.len(),
                self.blocks,
                self.id
            )));
        }
        Ok(bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect())
    }
}

/// The hex sha256 of a block list's bytes.
pub fn list_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    super::pack::hex(&Sha256::digest(bytes).into())
}

/// A new snapshot id: 12 hex digits, random (as Docker's short ids).
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 6];
    let mut f = fs::File::open("/dev/urandom").map_err(Error::io("open /dev/urandom"))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(Error::io("read /dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A tag: what a user types, and safe in a JSON record and a message.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "tag {tag:?}: use letters, digits, '.', '_' and '-' (at most 128)"
        ))),
    }
}
