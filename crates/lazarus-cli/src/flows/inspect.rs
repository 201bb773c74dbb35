//! `lazarus inspect FILE|DIR`: Lazarus's record of the checkpoint
//! (lazarus.json) beside what CRIU's own images hold; for an archive also
//! its config.dump and sizes.

use std::path::Path;

use lazarus_core::archive::{self, ArchiveConfig};
use lazarus_core::checkpoint::image::{Metadata, METADATA_FILE};
use lazarus_core::config::Config;
use lazarus_core::inspect::{field, render_text, summarize};
use lazarus_core::security::{authority, caps::CapSet, creds};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::progress::{self, Progress};
use crate::report::{human, pages_bytes, ratio};
use crate::seal;

pub fn run(path: &Path, json: bool, identity: Option<&Path>) -> Result<()> {
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "{} does not exist: give a checkpoint archive or directory",
            path.display()
        )));
    }
    if seal::is_encrypted(path) {
        // Decrypted into a private directory, removed when done.
        let tmp = private_tempdir()?;
        let plain = tmp.path().join("archive.tar");
        seal::decrypt(path, &plain, identity)?;
        return run(&plain, json, None);
    }
    if path.is_dir() {
        return show(path, json, None);
    }
    if archive::group::is_group(path) {
        return show_group(path, json);
    }
    // The whole archive is read and checked; only the memory pages are not
    // written out (their sizes are in the manifest).
    let tmp = private_tempdir()?;
    let dir = tmp.path().join("archive");
    let manifest = archive::read_manifest(path)?;
    let bar = Progress::bytes(progress::wanted(json), "verify", manifest.total_size());
    let pages = format!("{}/pages-", archive::CHECKPOINT_DIR);
    // The same limits as an import's: inspect is what a user runs on an
    // archive before trusting it.
    let limits = Config::load()?.import.limits();
    let extracted =
        archive::extract_with(path, &dir, &limits, &|n| !n.starts_with(&pages), &mut |n| {
            bar.set(n)
        });
    bar.finish();
    let manifest = extracted?;
    let config: Option<ArchiveConfig> = std::fs::read(dir.join(archive::CONFIG_DUMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let archive_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let size = |name: &str| {
        manifest
            .entries
            .iter()
            .find(|e| e.name == name)
            .map_or(0, |e| e.size)
    };
    let deleted = lazarus_core::checkpoint::rootfs::read_deleted(
        &dir.join(lazarus_core::checkpoint::rootfs::DELETED_FILES),
    )
    .map(|d| d.len())
    .unwrap_or(0);
    let compressed_pages = Metadata::load(&dir.join(archive::CHECKPOINT_DIR))
        .map(|m| m.compressed_pages)
        .unwrap_or_default();
    let info = json!({
        "file": path,
        "format": manifest.format,
        "written_by": manifest.lazarus_version,
        "config": config,
        "archive_bytes": archive_bytes,
        "content_bytes": manifest.total_size(),
        "pages_bytes": pages_bytes(&manifest, &compressed_pages),
        "pages_stored_bytes": pages_bytes(&manifest, &[]),
        "rootfs_diff_bytes": size(archive::ROOTFS_DIFF_TAR),
        "deleted_files": deleted,
        "volumes": volumes_in(&manifest),
        "entries": manifest.entries.len(),
        "signed_by": manifest.signer()?,
        "asks_for": asks_for(&dir),
    });
    show(&dir.join(archive::CHECKPOINT_DIR), json, Some(info))
}

/// The named volumes the archive carries: name and tar size each.
fn volumes_in(manifest: &archive::Manifest) -> Value {
    let prefix = format!("{}/", archive::volumes::VOLUMES_DIR);
    let volumes: Vec<Value> = manifest
        .entries
        .iter()
        .filter_map(|e| {
            let name = e.name.strip_prefix(&prefix)?.strip_suffix(".tar")?;
            Some(json!({ "name": name, "bytes": e.size }))
        })
        .collect();
    Value::Array(volumes)
}

/// A private (0700) temporary directory in TMPDIR, removed when dropped.
fn private_tempdir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("lazarus-inspect-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(lazarus_core::Error::io("create a temporary directory"))?)
}

/// The summary of the images in `dir`; `archive` is what the archive says
/// around them.
fn show(dir: &Path, json: bool, archive: Option<Value>) -> Result<()> {
    let mut summary = summarize(dir)?;
    if let Some(a) = &archive {
        // The pages were verified but not written out: count them from the
        // manifest.
        let pages = a["pages_bytes"].as_u64().unwrap_or(0);
        let stored = a["pages_stored_bytes"].as_u64().unwrap_or(0);
        summary.total_bytes += stored.saturating_sub(summary.pages_stored_bytes);
        summary.pages_bytes = pages;
        summary.pages_stored_bytes = stored;
    }
    // A plain CRIU dump has no lazarus.json; say so rather than fail.
    let metadata = match dir.join(METADATA_FILE).exists() {
        true => Some(Metadata::load(dir)?),
        false => None,
    };
    let credentials = creds::read_creds(dir)?;
    if json {
        let mut v = json!({ "lazarus": metadata, "criu": summary, "credentials": credentials });
        if let Some(a) = archive {
            v["archive"] = a;
        }
        println!("{v:#}");
        return Ok(());
    }
    match &archive {
        Some(a) => print!("{}", render_archive(a)),
        None => print!("{}", field("Checkpoint", dir.display())),
    }
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
    print!("{}", render_credentials(&credentials));
    Ok(())
}

/// What the archive's recorded configuration asks of the host that
/// imports it (see lazarus_core::security::authority): `engine.dump`'s
/// items for a Docker archive, `spec.dump`'s for the rest, as `restore
/// --import` checks them (and the spec's for both under "oci").
fn asks_for(dir: &Path) -> Value {
    let read = |name: &str| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    let docker = read(archive::ENGINE_DUMP).map(|b| authority::of_docker(&b));
    let oci = read(archive::SPEC_DUMP).map(|s| authority::of_oci_spec(&s));
    json!({ "docker": docker, "oci": oci })
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
fn render_archive(a: &Value) -> String {
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let c = &a["config"];
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    let mut lines = vec![
        ("Archive", a["file"].as_str().unwrap_or("").to_string()),
        (
            "Format",
            format!(
                "{} (written by Lazarus {})",
                n("format"),
                a["written_by"].as_str().unwrap_or("?")
            ),
        ),
    ];
    if c.is_object() {
        let image = match s("rootfsImageRef") {
            d if d.is_empty() => s("rootfsImageName"),
            d => format!("{} ({d})", s("rootfsImageName")),
        };
        lines.extend([
            ("Name", s("name")),
            ("Image", image),
            (
                "Engine",
                format!(
                    "{} (namespace {}), runtime {}",
                    s("engine"),
                    s("namespace"),
                    s("runtime")
                ),
            ),
            ("Created", s("createdTime")),
            ("Checkpointed", s("checkpointedTime")),
        ]);
    }
    let signer = match a["signed_by"].as_str() {
        Some(key) => format!("{key} (signature verified)"),
        None => "unsigned".to_string(),
    };
    lines.push(("Signed by", signer));
    // The items restore --import checks: Docker's for a Docker archive.
    let asked = match &a["asks_for"]["docker"] {
        Value::Null => &a["asks_for"]["oci"],
        docker => docker,
    };
    let items: Vec<String> = asked
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let flag = format!("--allow-{}", i["grant"].as_str().unwrap_or("?"));
            format!("{} ({flag})", i["what"].as_str().unwrap_or("?"))
        })
        .collect();
    lines.push((
        "Asks for",
        match items.is_empty() {
            true => "nothing beyond a plain container".to_string(),
            false => items.join("\n                   "),
        },
    ));
    lines.extend([
        ("Size", ratio(n("archive_bytes"), n("content_bytes"))),
        (
            "Rootfs diff",
            format!(
                "{}, {} deleted paths",
                human(n("rootfs_diff_bytes")),
                n("deleted_files")
            ),
        ),
    ]);
    let volumes: Vec<String> = a["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let bytes = v["bytes"].as_u64().unwrap_or(0);
            format!("{} ({})", v["name"].as_str().unwrap_or("?"), human(bytes))
        })
        .collect();
    if !volumes.is_empty() {
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

/// A group archive (`checkpoint --group`): its index, every member checked
/// against it on the way.
fn show_group(path: &Path, json: bool) -> Result<()> {
    let tmp = private_tempdir()?;
    let (index, _) = archive::group::extract_group(path, &tmp.path().join("members"))?;
    if json {
        println!("{:#}", json!({ "file": path, "group": index }));
        return Ok(());
    }
    println!("Group archive   {}", path.display());
    println!("Frozen at       {}", index.frozen_at.to_rfc3339());
    println!("Left running    {}", index.left_running);
    println!(
        "Members         {} (restored in this order)",
        index.members.len()
    );
    for m in &index.members {
        println!(
            "  {:<24} {:<10} {:>10}  {}",
            m.name,
            m.engine,
            human(m.size),
            m.namespace
        );
    }
    Ok(())
}
