//! `lazarus inspect DIR`: Lazarus's record of the checkpoint (lazarus.json)
//! beside what CRIU's own images hold.

use std::path::Path;

use lazarus_core::checkpoint::image::{Metadata, METADATA_FILE};
use lazarus_core::inspect::{field, render_text, summarize};

pub fn run(dir: &Path, json: bool) -> lazarus_core::Result<()> {
    if !dir.exists() {
        return Err(lazarus_core::Error::NotFound(format!(
            "{} does not exist: give a checkpoint directory",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(lazarus_core::Error::InvalidArgument(format!(
            "{} is not a directory: give a checkpoint directory",
            dir.display()
        )));
    }
    let mut summary = summarize(dir)?;
    // A plain CRIU dump has no lazarus.json; say so rather than fail.
    let metadata = match dir.join(METADATA_FILE).exists() {
        true => Some(Metadata::load(dir)?),
        false => None,
    };
    if json {
        let v = serde_json::json!({ "lazarus": metadata, "criu": summary });
        println!("{v:#}");
        return Ok(());
    }
    print!("{}", field("Checkpoint", dir.display()));
    match &metadata {
        Some(m) => {
            print!("{}", render_metadata(m));
            // CRIU's log is where the images name CRIU's version; a
            // checkpoint whose log was not kept still has Lazarus's record.
            summary
                .criu_version
                .get_or_insert_with(|| m.criu_version.clone());
        }
        None => print!(
            "{}",
            field(
                "Taken by",
                format!("not taken by Lazarus (no {METADATA_FILE}): a plain CRIU dump")
            )
        ),
    }
    print!("{}", render_text(&summary));
    Ok(())
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
