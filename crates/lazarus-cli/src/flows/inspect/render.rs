//! `lazarus inspect`'s text: aligned lines, as checkpointctl shows a
//! checkpoint.

use chrono::SecondsFormat::AutoSi;
use lazarus_core::checkpoint::image::{Metadata, METADATA_FILE};
use lazarus_core::inspect::{field, render_text};
use lazarus_core::security::{caps::CapSet, creds};

use super::{ArchiveInfo, CheckpointReport, GroupReport, Inspected};
use crate::report::{human, ratio, Summary};

impl Summary for Inspected {
    fn summary(&self) -> String {
        let text = match self {
            Inspected::Checkpoint(c) => c.text(),
            Inspected::Group(g) => g.text(),
        };
        // Printed with a newline of its own.
        text.trim_end_matches('\n').to_string()
    }
}

impl CheckpointReport {
    fn text(&self) -> String {
        let mut out = match &self.archive {
            Some(a) => render_archive(a),
            None => field("Checkpoint", self.dir.display()),
        };
        out.push_str(&match &self.lazarus {
            Some(m) => render_metadata(m),
            None => field(
                "Taken by",
                format!("not taken by Lazarus (no {METADATA_FILE}): a plain CRIU dump"),
            ),
        });
        out.push_str(&render_text(&self.criu));
        out.push_str(&render_credentials(&self.credentials));
        out
    }
}

impl GroupReport {
    fn text(&self) -> String {
        let index = &self.group;
        let mut out = format!(
            "Group archive   {}\nFrozen at       {}\nLeft running    {}\nMembers         {} \
             (restored in this order)\n",
            self.file.display(),
            index.frozen_at.to_rfc3339(),
            index.left_running,
            index.members.len()
        );
        for m in &index.members {
            out.push_str(&format!(
                "  {:<24} {:<10} {:>10}  {}\n",
                m.name,
                m.engine,
                human(m.size),
                m.namespace
            ));
        }
        out
    }
}

/// Each thread's credentials, as CRIU would restore them: what goes
/// beyond a default container is named.
fn render_credentials(threads: &[creds::ThreadCreds]) -> String {
    if threads.is_empty() {
        return String::new();
    }
    let default = CapSet::default_set();
    let mut out =
        String::from("\nCredentials (restored as recorded; checked against the new container)\n");
    out.push_str(&format!(
        "  {:<8} {:<16} {:<6} {:<9} {:<4} {}\n",
        "TID", "COMM", "UID", "SECCOMP", "NNP", "CAPABILITIES BEYOND DEFAULT"
    ));
    for t in threads {
        let beyond = t.bounding.minus(default);
        let seccomp = match t.seccomp_mode {
            // CRIU keeps the mode with the process's first thread only.
            _ if !t.leader => "(process)",
            0 => "off",
            1 => "strict",
            2 => "filter",
            _ => "?",
        };
        out.push_str(&format!(
            "  {:<8} {:<16} {:<6} {:<9} {:<4} {}\n",
            t.tid,
            t.comm,
            t.uids[1],
            seccomp,
            if t.no_new_privs { "yes" } else { "no" },
            if beyond.is_empty() {
                "none".to_string()
            } else {
                beyond.to_string()
            }
        ));
    }
    out
}

/// The archive's own lines: where from, and its sizes.
fn render_archive(a: &ArchiveInfo) -> String {
    let mut lines = vec![
        ("Archive", a.file.display().to_string()),
        (
            "Format",
            format!("{} (written by Lazarus {})", a.format, a.written_by),
        ),
    ];
    if let Some(c) = &a.config {
        let image = match c.image_digest.as_str() {
            "" => c.image_name.clone(),
            d => format!("{} ({d})", c.image_name),
        };
        lines.extend([
            ("Name", c.name.clone()),
            ("Image", image),
            (
                "Engine",
                format!(
                    "{} (namespace {}), runtime {}",
                    c.engine, c.namespace, c.runtime
                ),
            ),
            ("Created", c.created.to_rfc3339_opts(AutoSi, true)),
            ("Checkpointed", c.checkpointed.to_rfc3339_opts(AutoSi, true)),
        ]);
    }
    let signer = match &a.signed_by {
        Some(key) => format!("{key} (signature verified)"),
        None => "unsigned".to_string(),
    };
    lines.push(("Signed by", signer));
    // The items restore --import checks: Docker's for a Docker archive.
    let asked = a.asks_for.docker.as_ref().or(a.asks_for.oci.as_ref());
    let items: Vec<String> = asked
        .into_iter()
        .flatten()
        .map(|i| format!("{} (--allow-{})", i.what, i.grant.name()))
        .collect();
    lines.push((
        "Asks for",
        match items.is_empty() {
            true => "nothing beyond a plain container".to_string(),
            false => items.join("\n                   "),
        },
    ));
    lines.extend([
        ("Size", ratio(a.archive_bytes, a.content_bytes)),
        (
            "Rootfs diff",
            format!(
                "{}, {} deleted paths",
                human(a.rootfs_diff_bytes),
                a.deleted_files
            ),
        ),
    ]);
    if !a.volumes.is_empty() {
        let volumes: Vec<String> = a
            .volumes
            .iter()
            .map(|v| format!("{} ({})", v.name, human(v.bytes)))
            .collect();
        lines.push(("Volumes", volumes.join(", ")));
    }
    lines.iter().map(|(k, v)| field(k, v)).collect()
}

/// lazarus.json as aligned lines, the lists only when they are not empty.
fn render_metadata(m: &Metadata) -> String {
    let o = &m.options;
    let flags: Vec<&str> = [
        (o.tcp_established, "tcp-established"),
        (o.ext_unix_sk, "ext-unix-sk"),
        (o.shell_job, "shell-job"),
        (o.file_locks, "file-locks"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let mut options = match flags.is_empty() {
        true => "none".to_string(),
        false => flags.join(", "),
    };
    options.push_str(&format!("; cgroups {:?}", o.cgroups_mode));
    if !o.empty_namespaces.is_empty() {
        options.push_str(&format!(
            "; empty namespaces: {}",
            o.empty_namespaces.join(", ")
        ));
    }
    let mut lines = vec![
        ("Container", m.container_id.clone()),
        (
            "Taken by",
            format!("Lazarus {} with CRIU {}", m.lazarus_version, m.criu_version),
        ),
        ("Dump options", options),
        (
            "Terminal",
            if m.terminal { "yes" } else { "no" }.to_string(),
        ),
        ("Cgroup", m.cgroup_path.clone()),
    ];
    if !m.external_mounts.is_empty() {
        lines.push(("External mounts", m.external_mounts.join(", ")));
    }
    if !m.external_namespaces.is_empty() {
        lines.push(("Joined namespaces", m.external_namespaces.join(", ")));
    }
    lines.iter().map(|(k, v)| field(k, v)).collect()
}
