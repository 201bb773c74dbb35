//! The frozen checkpoint's steps on real members: their network locks
//! (lazarus-core's `host::netlock`, as root), their tasks through
//! containerd, and each member's dump as an ordinary export; then either
//! one group archive of them all, or (a single container's stopping
//! checkpoint) the one member's archive itself.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use lazarus_core::archive::group::{self, MemberArchive};
use lazarus_core::config::Config;
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock;

use super::freeze::Steps;
use crate::engine::containerd::Status;
use crate::error::Result;
use crate::flows::export::{self, ExportArgs, Source};
use crate::report::ExportReport;
use crate::seal;

/// What the frozen members' dumps become.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    /// Each member's archive in scratch, then one group archive of them.
    Group,
    /// One container: its ordinary archive straight at the destination,
    /// or first in scratch when it is to be encrypted to `encrypt`'s
    /// recipients.
    Single { encrypt: Option<&'a Path> },
}

/// The members found and checked, with their network namespaces (through
/// each one's init) and the scratch directory their archives go to.
pub struct Live<'a> {
    pub args: &'a ExportArgs,
    pub config: &'a Config,
    pub sources: &'a [Source],
    pub namespaces: &'a [PathBuf],
    pub scratch: &'a Path,
    pub output: Output<'a>,
}

impl Live<'_> {
    fn member(&self, i: usize) -> (&Source, &str) {
        let s = &self.sources[i];
        (s, s.target.id.as_str())
    }
}

impl Steps for Live<'_> {
    fn count(&self) -> usize {
        self.sources.len()
    }

    fn name(&self, i: usize) -> &str {
        &self.sources[i].target.name
    }

    fn lock(&self, i: usize) -> Result<bool> {
        Ok(netlock::lock(&self.namespaces[i], &DirectWait)?)
    }

    fn unlock(&self, i: usize) -> Result<()> {
        netlock::unlock(&self.namespaces[i], &DirectWait)?;
        Ok(())
    }

    async fn pause(&self, i: usize) -> Result<()> {
        let (s, id) = self.member(i);
        s.ctr.pause(id).await
    }

    async fn resume(&self, i: usize) -> Result<()> {
        let (s, id) = self.member(i);
        s.ctr.resume(id).await
    }

    async fn kill(&self, i: usize) -> Result<()> {
        let (s, id) = self.member(i);
        s.ctr.kill_all(id).await
    }

    async fn stopped(&self, i: usize) -> Result<bool> {
        let (s, id) = self.member(i);
        Ok(matches!(
            s.ctr.task_status(id).await?,
            None | Some(Status::Stopped)
        ))
    }

    async fn dump(&self, i: usize) -> Result<(ExportReport, PathBuf)> {
        let s = &self.sources[i];
        let (export, json) = match self.output {
            Output::Group => (self.scratch.join(format!("{i}.tar")), true),
            Output::Single { encrypt: None } => (self.args.export.clone(), self.args.json),
            Output::Single { encrypt: Some(_) } => {
                (self.scratch.join("archive.tar"), self.args.json)
            }
        };
        let member = ExportArgs {
            container: Some(s.target.name.clone()),
            group: Vec::new(),
            compose: None,
            pod: None,
            export,
            // Left frozen: the frozen checkpoint decides afterwards.
            leave_running: true,
            json,
            print_stats: false,
            from_docker_checkpoint: None,
            encrypt: None,
            migration: None,
            ..self.args.clone()
        };
        let report = export::export(&member, s, self.config).await?;
        Ok((report, member.export))
    }

    fn write_group(
        &self,
        files: &[PathBuf],
        frozen_at: DateTime<Utc>,
        left_running: bool,
        dest: &Path,
    ) -> Result<()> {
        match self.output {
            Output::Group => {}
            // Already in place.
            Output::Single { encrypt: None } => return Ok(()),
            Output::Single {
                encrypt: Some(recipients),
            } => return seal::encrypt(&files[0], dest, recipients),
        }
        let archives: Vec<MemberArchive> = self
            .sources
            .iter()
            .zip(files)
            .map(|(s, f)| MemberArchive {
                name: &s.target.name,
                id: &s.target.id,
                engine: s.target.engine(),
                namespace: &s.target.namespace,
                archive: f,
            })
            .collect();
        group::write_group(&archives, frozen_at, left_running, dest)?;
        Ok(())
    }
}
