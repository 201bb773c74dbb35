//! The export's steps on a real container: containerd's Task API through
//! the container's shim, Docker's checkpoint directories, the archive.

use std::path::Path;

use chrono::{DateTime, Utc};
use containerd_client::types::v1::Status;

use super::docker_checkpoint::copy_docker_checkpoint;
use super::flow::Steps;
use super::write::{archive_it, Archived};
use super::{ExportArgs, Source};
use crate::engine::containerd::CheckpointOptions;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::progress::{dir_bytes, Progress};

/// A found container, and whether progress is drawn.
pub struct Live<'a> {
    pub source: &'a Source,
    pub show: bool,
}

impl Live<'_> {
    fn docker(&self) -> Result<&crate::engine::docker::Docker> {
        self.source.docker.as_ref().ok_or_else(|| {
            Error::Refused(format!(
                "{} is not a Docker container",
                self.source.target.name
            ))
        })
    }
}

impl Steps for Live<'_> {
    fn target(&self) -> &Target {
        &self.source.target
    }

    async fn task_status(&self) -> Result<Option<Status>> {
        self.source.ctr.task_status(&self.source.target.id).await
    }

    async fn memory_in_use(&self) -> Option<u64> {
        let pid = self
            .source
            .ctr
            .task_pid(&self.source.target.id)
            .await
            .ok()?;
        lazarus_core::host::memory::cgroup_memory(pid)
    }

    async fn copy_docker_checkpoint(&self, name: &str, images: &Path) -> Result<()> {
        copy_docker_checkpoint(self.docker()?, &self.source.target, name, images).await
    }

    /// Asks the shim, drawing the images' growth as it goes.
    async fn checkpoint(&self, options: &CheckpointOptions, images: &Path) -> Result<()> {
        let bar = Progress::spinner(self.show, "checkpoint");
        let dump = self.source.ctr.checkpoint(&self.source.target.id, options);
        tokio::pin!(dump);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        let dumped = loop {
            tokio::select! {
                r = &mut dump => break r,
                _ = tick.tick() => bar.set(dir_bytes(images)),
            }
        };
        bar.finish();
        dumped
    }

    async fn archive(
        &self,
        args: &ExportArgs,
        scratch: &Path,
        dumped_at: DateTime<Utc>,
    ) -> Result<Archived> {
        let s = self.source;
        archive_it(
            args,
            &s.target,
            s.container.as_ref(),
            &s.ctr,
            scratch,
            dumped_at,
        )
        .await
    }
}
