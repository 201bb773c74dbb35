//! What `restore --import` reports: the container it made (and how the
//! checkpoint reached the runtime), or a group's, and the sentence that
//! says whether it runs.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Summary;

/// What `restore --import` made: the new container, and where from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub name: String,
    pub id: String,
    /// "docker" or "containerd".
    pub engine: String,
    pub namespace: String,
    pub from: PathBuf,
    pub extract_seconds: f64,
    /// From the start until the container ran: the extraction, the
    /// engine's create and the root filesystem changes, and its start.
    pub restore_seconds: f64,
    /// Of which the engine's start of the new container: the runtime's
    /// restore (CRIU, and the runtime's work around it). None from an
    /// older receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_seconds: Option<f64>,
    /// A stop-and-copy migration's memory, received before the archive.
    #[serde(default)]
    pub pages_bytes: Option<u64>,
    /// The volumes made here from the archive's copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// How the checkpoint reached the runtime: [`PATH_HAND_OFF`] (Lazarus
    /// restored from the extracted images where they lay),
    /// [`PATH_DOCKER_CHECKPOINT`] (another runtime, through a Docker
    /// checkpoint Docker copies before it starts) or [`PATH_CONTAINERD`]
    /// (a containerd task restored from the images). Empty from an older
    /// receiver.
    #[serde(default)]
    pub restore_path: String,
    /// Whether it ran once restored (`restore --import`'s last stage,
    /// "ready"); not looked at by a migration's receiver (its sender
    /// waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

pub const PATH_HAND_OFF: &str = "hand-off";
pub const PATH_DOCKER_CHECKPOINT: &str = "docker-checkpoint";
pub const PATH_CONTAINERD: &str = "containerd";

/// What `restore --import` of a group archive made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupImportReport {
    pub group: PathBuf,
    /// How long the members' network stayed locked after the last restore.
    pub unlock_seconds: f64,
    pub frozen_at: DateTime<Utc>,
    pub members: Vec<ImportReport>,
    pub restore_seconds: f64,
}

/// Either kind of import, as the command found the archive.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Imported {
    One(ImportReport),
    Group(GroupImportReport),
}

/// What the import's "ready" stage found.
fn running_said(r: &ImportReport) -> String {
    match r.running {
        None => String::new(),
        Some(true) => "; it runs".into(),
        Some(false) => format!(
            "; it is NOT running: its processes ended right after the restore (see {})",
            match r.engine.as_str() {
                "docker" => format!("`docker logs {}` and its shim's log", r.name),
                _ => "its shim's log".to_string(),
            }
        ),
    }
}

impl Summary for Imported {
    fn said(&self) -> Option<String> {
        Some(match self {
            Imported::One(r) => format!(
                "lazarus: restored {} ({}) from {} in {:.2} s (verified and unpacked in {:.2} \
                 s){}{}",
                r.name,
                r.engine,
                r.from.display(),
                r.restore_seconds,
                r.extract_seconds,
                match r.volumes.is_empty() {
                    true => String::new(),
                    false => format!("; volumes made: {}", r.volumes.join(", ")),
                },
                running_said(r),
            ),
            Imported::Group(g) => {
                let stopped: Vec<&str> = g
                    .members
                    .iter()
                    .filter(|m| m.running == Some(false))
                    .map(|m| m.name.as_str())
                    .collect();
                format!(
                    "lazarus: restored {} containers together from {} in {:.2} s{}",
                    g.members.len(),
                    g.group.display(),
                    g.restore_seconds,
                    match stopped.is_empty() {
                        true => String::new(),
                        false => format!(
                            "; NOT running (ended right after the restore): {}",
                            stopped.join(", ")
                        ),
                    }
                )
            }
        })
    }

    fn summary(&self) -> String {
        match self {
            Imported::One(r) => r.name.clone(),
            Imported::Group(g) => g
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}
