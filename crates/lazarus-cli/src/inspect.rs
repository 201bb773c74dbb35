//! `lazarus inspect DIR`: Lazarus's record of the checkpoint (lazarus.json)
//! beside what CRIU's own images hold.

use std::path::Path;

use lazarus_core::checkpoint::image::{Metadata, METADATA_FILE};
use lazarus_core::inspect::{render_text, summarize};

pub fn run(dir: &Path, json: bool) -> lazarus_core::Result<()> {
    if !dir.is_dir() {
        return Err(lazarus_core::Error::NotFound(format!(
            "{} is not a directory: give a checkpoint directory",
            dir.display()
        )));
    }
    let summary = summarize(dir)?;
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
    match &metadata {
        Some(m) => {
            println!("Container:      {}", m.container_id);
            println!(
                "Taken by:       Lazarus {} with CRIU {}",
                m.lazarus_version, m.criu_version
            );
            let o = &m.options;
            let mut flags: Vec<&str> = Vec::new();
            for (on, name) in [
                (o.tcp_established, "tcp-established"),
                (o.ext_unix_sk, "ext-unix-sk"),
                (o.shell_job, "shell-job"),
                (o.file_locks, "file-locks"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            println!(
                "Dump options:   {} (cgroups {:?}{})",
                if flags.is_empty() {
                    "none".to_string()
                } else {
                    flags.join(", ")
                },
                o.cgroups_mode,
                if o.empty_namespaces.is_empty() {
                    String::new()
                } else {
                    format!(", empty namespaces: {}", o.empty_namespaces.join(", "))
                }
            );
            println!("Terminal:       {}", if m.terminal { "yes" } else { "no" });
            println!("Cgroup:         {}", m.cgroup_path);
            if !m.external_mounts.is_empty() {
                println!("External mounts: {}", m.external_mounts.join(", "));
            }
            if !m.external_namespaces.is_empty() {
                println!("Joined namespaces: {}", m.external_namespaces.join(", "));
            }
        }
        None => println!("(no {METADATA_FILE}: a CRIU dump not taken by Lazarus)"),
    }
    println!();
    print!("{}", render_text(&summary));
    Ok(())
}
