//! An archive is hostile until the importing user says otherwise: crafted
//! archives (a real one, edited as an attacker would and its manifest
//! recomputed) ask for hooks, privileges, host paths and namespaces,
//! capabilities, no seccomp, another container's cgroup, or more disk than
//! there is. Each is refused by default with a message naming the item and
//! the flag that grants it, leaving nothing behind; legitimate ones pass
//! with their flag. Signed archives name their signer; a foreign, missing
//! or broken signature is refused where one is required.
//!
//! Under runc there is nothing to export (the CLI refuses a runc
//! container, as archive_tests checks): each case asserts that refusal.

use crate::support::lazarus::{lazarus, write_cli_config};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::archive::export_import::{
    assert_cli_left_nothing, assert_counts_on, docker_names, start_ctr_counter,
};
use crate::containerd::ctr::{task_status, wait_status};
use crate::docker::lifecycle::{docker_run_args, last_tick, run_sh_detached, wait_ticks_past};
use crate::support::cmd::{run, COUNTER};
use crate::support::harness::Daemons;

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// Unpacks the plain-tar archive `src`, lets `edit` change its files, then
/// packs it again as `out` with a manifest whose sizes and digests match
/// the edited files (its signature, if any, kept as it was): what an
/// attacker holding the archive can make.
pub(crate) fn recraft(src: &Path, out: &Path, edit: impl FnOnce(&Path)) {
    let dir = out.with_extension("d");
    fs::create_dir_all(&dir).unwrap();
    run(Command::new("tar").arg("-C").arg(&dir).arg("-xf").arg(src)).ok();
    edit(&dir);
    let manifest_path = dir.join("lazarus-manifest.json");
    let mut manifest: Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let mut names = vec!["lazarus-manifest.json".to_string()];
    for e in manifest["entries"].as_array_mut().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        if e["dir"] != json!(true) {
            let path = dir.join(&name);
            let sum = run(Command::new("sha256sum").arg(&path)).ok().stdout;
            e["sha256"] = json!(sum.split_whitespace().next().unwrap());
            e["size"] = json!(fs::metadata(&path).unwrap().len());
        }
        names.push(name);
    }
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("--no-recursion")
        .arg("-cf")
        .arg(out)
        .args(&names))
    .ok();
}

/// Edits the JSON file `name` in an unpacked archive.
pub(crate) fn edit_json(dir: &Path, name: &str, f: impl FnOnce(&mut Value)) {
    let path = dir.join(name);
    let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    f(&mut v);
    fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// `restore --import FILE ARGS` on `b` fails naming each of `wants`, and
/// leaves no container, scratch directory or mount there.
fn assert_import_refused(b: &Daemons, file: &Path, args: &[&str], wants: &[&str]) -> String {
    let mut all = vec!["restore", "--import", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = lazarus(b, &all).err();
    for want in wants {
        assert!(
            out.stderr.contains(want),
            "{}: {want:?} not in the refusal: {out}",
            file.display()
        );
    }
    if b.has_docker() {
        assert!(docker_names(b).is_empty(), "a container was left: {out}");
    }
    let containers = b.ctr(&["containers", "ls", "-q"]).ok().stdout;
    assert!(
        containers.trim().is_empty(),
        "left in containerd: {containers}"
    );
    assert_cli_left_nothing(b);
    out.stderr
}

/// `lazarus checkpoint TARGET --export FILE --compress none EXTRA` on `a`:
/// true once written; under runc false, after checking that the CLI
/// refused the container by its runtime.
fn export(a: &Daemons, target: &[&str], file: &Path, extra: &[&str]) -> bool {
    let mut args = vec!["checkpoint"];
    args.extend_from_slice(target);
    args.extend(["--export", file.to_str().unwrap(), "--compress", "none"]);
    args.extend_from_slice(extra);
    if a.runtime() != LAZARUS {
        let out = lazarus(a, &args).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        return false;
    }
    lazarus(a, &args).ok();
    true
}

/// Exports the Docker container `name` from `a` (see [`export`]).
fn export_docker(a: &Daemons, name: &str, extra: &[&str]) -> Option<PathBuf> {
    let file = a.path(&format!("{name}.tar"));
    export(a, &[name], &file, extra).then_some(file)
}

/// Exports the ctr container `id` from `a` into `file` (see [`export`]);
/// under runc it is left running.
fn export_ctr(a: &Daemons, id: &str, file: &Path, extra: &[&str]) -> bool {
    let written = export(a, &["--namespace", &a.id, id], file, extra);
    if !written {
        assert_eq!(task_status(a, id).as_deref(), Some("RUNNING"));
    }
    written
}

/// The Docker create request an attacker writes into engine.dump: each
/// refused by name, and a host path that does not exist is not created.
#[test]
fn security_crafted_docker_archives_are_refused_by_name() {
    let a = Daemons::with_docker("sec_docker_a");
    let b = Daemons::with_docker("sec_docker_b");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 2);
    let Some(base) = export_docker(&a, &name, &[]) else {
        return;
    };
    let last = last_tick(&a, &name);
    let missing = format!("/var/tmp/lazarus-e2e-never-made-{}", b.id);
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "privileged",
            json!({"Privileged": true}),
            vec!["privileged mode (--allow-privileged)"],
        ),
        (
            "binds",
            json!({"Binds": ["/:/host", format!("{missing}:/x")]}),
            vec!["host path /:/host (--allow-host-mounts)", missing.as_str()],
        ),
        (
            "capadd",
            json!({"CapAdd": ["ALL"]}),
            vec!["CAP_SYS_ADMIN", "(--allow-capabilities)"],
        ),
        (
            "pidhost",
            json!({"PidMode": "host"}),
            vec!["the host's pid namespace (--allow-host-namespaces)"],
        ),
        (
            "seccomp",
            json!({"SecurityOpt": ["seccomp=unconfined"]}),
            vec!["seccomp disabled (--allow-security-options)"],
        ),
    ];
    for (case, host, wants) in cases {
        let out = b.path(&format!("{case}.tar"));
        recraft(&base, &out, |dir| {
            edit_json(dir, "engine.dump", |v| {
                for (k, val) in host.as_object().unwrap() {
                    v["HostConfig"][k] = val.clone();
                }
            })
        });
        let mut wants = wants.clone();
        wants.push("Nothing was created");
        assert_import_refused(&b, &out, &[], &wants);
        assert!(
            !Path::new(&missing).exists(),
            "{case}: the import made {missing}"
        );
        if case == "privileged" {
            let text = lazarus(&b, &["inspect", out.to_str().unwrap()]).ok().stdout;
            assert!(
                text.contains("privileged mode (--allow-privileged)"),
                "{text}"
            );
        }
    }
    // A legitimate extra capability, granted: the import goes through and
    // counts on (the images' own capabilities are within the new set).
    let netadmin = b.path("netadmin.tar");
    recraft(&base, &netadmin, |dir| {
        edit_json(dir, "engine.dump", |v| {
            v["HostConfig"]["CapAdd"] = json!(["NET_ADMIN"])
        })
    });
    assert_import_refused(
        &b,
        &netadmin,
        &[],
        &["CAP_NET_ADMIN (--allow-capabilities)"],
    );
    lazarus(
        &b,
        &[
            "restore",
            "--import",
            netadmin.to_str().unwrap(),
            "--allow-capabilities",
        ],
    )
    .ok();
    assert_counts_on(&b, &name, last);
    assert_cli_left_nothing(&b);
}

/// CRIU restores the credentials its images hold: a container run with an
/// extra capability and without seccomp, exported, its engine.dump edited
/// to an ordinary container's, is refused at restore by the shim (the
/// process would keep CAP_SYS_ADMIN and no filter), with nothing left; the
/// unedited archive restores with the two grants it needs.
#[test]
fn security_credentials_beyond_the_new_container_are_refused() {
    let a = Daemons::with_docker("sec_creds_a");
    let b = Daemons::with_docker("sec_creds_b");
    let name = a.name("wide");
    let flags = [
        "-d",
        "--name",
        &name,
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
    ];
    a.docker(&docker_run_args(&a, &flags, &["sh", "-c", COUNTER]))
        .ok();
    wait_ticks_past(&a, &name, 2);
    let Some(base) = export_docker(&a, &name, &[]) else {
        return;
    };
    let last = last_tick(&a, &name);
    let text = lazarus(&b, &["inspect", base.to_str().unwrap()])
        .ok()
        .stdout;
    for want in ["Credentials", "CAP_SYS_ADMIN", "off"] {
        assert!(text.contains(want), "inspect lacks {want:?}:\n{text}");
    }
    let narrowed = b.path("narrowed.tar");
    recraft(&base, &narrowed, |dir| {
        edit_json(dir, "engine.dump", |v| {
            let h = v["HostConfig"].as_object_mut().unwrap();
            h.remove("CapAdd");
            h.remove("SecurityOpt");
        })
    });
    assert_import_refused(
        &b,
        &narrowed,
        &[],
        &[
            "CAP_SYS_ADMIN",
            "beyond this container's bounding set",
            "no seccomp filter",
        ],
    );
    // As exported: refused by the policy, then granted.
    assert_import_refused(
        &b,
        &base,
        &[],
        &["--allow-capabilities", "--allow-security-options"],
    );
    let grants = ["--allow-capabilities", "--allow-security-options"];
    let mut args = vec!["restore", "--import", base.to_str().unwrap()];
    args.extend_from_slice(&grants);
    lazarus(&b, &args).ok();
    assert_counts_on(&b, &name, last);
}

/// containerd archives: a hook in spec.dump is refused (and never runs);
/// a cgroup path naming another container's cgroup is replaced by the new
/// container's own, so the victim is not touched by what happens to it.
#[test]
fn security_crafted_spec_hooks_and_cgroup_paths() {
    let a = Daemons::containerd_only("sec_spec_a");
    let b = Daemons::containerd_only("sec_spec_b");
    let id = a.name("c");
    let _count = start_ctr_counter(&a, &id);
    let file = a.path("c.tar");
    if !export_ctr(&a, &id, &file, &[]) {
        return;
    }
    let marker = b.path("hook-ran");
    let hooked = b.path("hooked.tar");
    recraft(&file, &hooked, |dir| {
        edit_json(dir, "spec.dump", |v| {
            v["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
                "args": ["sh", "-c", format!("touch {}", marker.display())]}]});
        })
    });
    let ns = ["--namespace", b.id.as_str()];
    assert_import_refused(
        &b,
        &hooked,
        &ns,
        &["createRuntime hook: /bin/sh", "(--allow-hooks)"],
    );
    assert!(!marker.exists(), "the archive's hook ran on the host");

    // The victim: a container of B's own, counting.
    let victim = b.name("victim");
    let count = start_ctr_counter(&b, &victim);
    let cgroup = b.path("victim-cgroup");
    let victim_cgroup = format!("/{}/{victim}", b.id);
    fs::write(&cgroup, &victim_cgroup).unwrap();
    let joiner = b.path("joiner.tar");
    recraft(&file, &joiner, |dir| {
        edit_json(dir, "spec.dump", |v| {
            v["linux"]["cgroupsPath"] = json!(victim_cgroup)
        })
    });
    let mut import = vec![
        "restore",
        "--import",
        joiner.to_str().unwrap(),
        "--name",
        "joiner",
    ];
    import.extend_from_slice(&ns);
    lazarus(&b, &import).ok();
    wait_status(&b, "joiner", "RUNNING");
    let pid = task_pid(&b, "joiner");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        !cgroups.contains(&format!("{victim_cgroup}\n")),
        "joined the victim's cgroup:\n{cgroups}"
    );
    assert!(cgroups.contains(&format!("/{}/joiner", b.id)), "{cgroups}");
    b.ctr(&["task", "kill", "-s", "KILL", "joiner"]).ok();
    wait_status(&b, "joiner", "STOPPED");
    let before = count(&b, "v1");
    crate::support::cmd::wait_until(
        "the victim to count on",
        std::time::Duration::from_secs(10),
        || (count(&b, "v2") > before).then_some(()),
    );
    assert_eq!(task_status(&b, &victim).as_deref(), Some("RUNNING"));
}

fn task_pid(d: &Daemons, id: &str) -> u32 {
    let out = d.ctr(&["task", "ls"]).ok();
    out.stdout
        .lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no task {id}: {out}"))
}

/// Signatures: a signed export names its signer in inspect and imports
/// where its key is trusted; a foreign key, no signature, or a signed
/// archive changed afterwards are refused. Size limits: an archive listing
/// too many entries, declaring more than the disk holds, or unpacking far
/// beyond its size is refused before anything is unpacked.
#[test]
fn security_signatures_and_archive_limits() {
    let a = Daemons::containerd_only("sec_sign_a");
    let b = Daemons::containerd_only("sec_sign_b");
    let id = a.name("c");
    let _count = start_ctr_counter(&a, &id);
    let file = a.path("signed.tar");
    let (mine, theirs) = (a.path("mine.key"), a.path("theirs.key"));
    for k in [&mine, &theirs] {
        lazarus(&a, &["keygen", "--sign", k.to_str().unwrap()]).ok();
    }
    let public = |k: &Path| PathBuf::from(format!("{}.pub", k.display()));
    let key_hex = fs::read_to_string(public(&mine))
        .unwrap()
        .trim()
        .to_string();
    let signed = ["--leave-running", "--sign", mine.to_str().unwrap()];
    if !export_ctr(&a, &id, &file, &signed) {
        return;
    }
    let text = lazarus(&b, &["inspect", file.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(
        text.contains(&format!("{key_hex} (signature verified)")),
        "{text}"
    );
    let ns = b.id.clone();
    let import = |f: &Path, keys: &Path, name: &str| -> Vec<String> {
        [
            "restore",
            "--import",
            f.to_str().unwrap(),
            "--namespace",
            &ns,
            "--name",
            name,
            "--require-signed",
            keys.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let refused = |args: Vec<String>, want: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lazarus(&b, &args).err();
        assert!(out.stderr.contains(want), "{want:?}: {out}");
        assert_cli_left_nothing(&b);
    };
    refused(
        import(&file, &public(&theirs), "x1"),
        &format!("signed by {key_hex}"),
    );
    let unsigned = a.path("unsigned.tar");
    assert!(export_ctr(&a, &id, &unsigned, &["--leave-running"]));
    refused(import(&unsigned, &public(&mine), "x2"), "is not signed");
    let tampered = b.path("tampered.tar");
    recraft(&file, &tampered, |dir| {
        edit_json(dir, "spec.dump", |v| {
            v["annotations"]["added"] = json!("later")
        })
    });
    refused(
        import(&tampered, &public(&mine), "x3"),
        "does not match its manifest",
    );
    let out = lazarus(
        &b,
        &[
            "restore",
            "--import",
            tampered.to_str().unwrap(),
            "--namespace",
            &ns,
        ],
    )
    .err();
    assert!(
        out.stderr.contains("does not match its manifest"),
        "checked without --require-signed too: {out}"
    );
    let ok = import(&file, &public(&mine), "trusted");
    lazarus(&b, &ok.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    wait_status(&b, "trusted", "RUNNING");

    // Encrypted at rest: only the recipient's identity opens it.
    let (age_key, other_age) = (a.path("archive.age"), a.path("other.age"));
    for k in [&age_key, &other_age] {
        lazarus(&a, &["keygen", "--age", k.to_str().unwrap()]).ok();
    }
    let sealed = a.path("sealed.tar.age");
    lazarus(
        &a,
        &[
            "checkpoint",
            "--namespace",
            &a.id,
            &id,
            "--export",
            sealed.to_str().unwrap(),
            "--leave-running",
            "--encrypt",
            public(&age_key).to_str().unwrap(),
        ],
    )
    .ok();
    let head = fs::read(&sealed).unwrap();
    assert!(
        head.starts_with(b"age-encryption.org/v1"),
        "not an age file"
    );
    assert!(
        !head.windows(9).any(|w| w == b"spec.dump"),
        "plain entry names in the file"
    );
    let s = sealed.to_str().unwrap();
    let out = lazarus(&b, &["inspect", s]).err();
    assert!(out.stderr.contains("--identity"), "{out}");
    let text = lazarus(&b, &["inspect", s, "--identity", age_key.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(text.contains("Asks for"), "{text}");
    let wrong = [
        "restore",
        "--import",
        s,
        "--namespace",
        &ns,
        "--name",
        "x4",
        "--identity",
        other_age.to_str().unwrap(),
    ];
    let out = lazarus(&b, &wrong).err();
    assert!(out.stderr.contains("another key"), "{out}");
    assert_cli_left_nothing(&b);
    let right = [
        "restore",
        "--import",
        s,
        "--namespace",
        &ns,
        "--name",
        "opened",
        "--identity",
        age_key.to_str().unwrap(),
    ];
    lazarus(&b, &right).ok();
    wait_status(&b, "opened", "RUNNING");
    assert_cli_left_nothing(&b);

    // Limits, each on an archive that is only a manifest (plus zeros).
    let craft = |name: &str, entries: Value, zeros: u64| -> PathBuf {
        let dir = b.path(&format!("{name}.d"));
        fs::create_dir_all(&dir).unwrap();
        let manifest = json!({"format": 1, "lazarus_version": "0.2.0", "entries": entries});
        fs::write(
            dir.join("lazarus-manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let mut names = vec!["lazarus-manifest.json"];
        if zeros > 0 {
            let f = fs::File::create(dir.join("zeros")).unwrap();
            f.set_len(zeros).unwrap();
            names.push("zeros");
        }
        let tar = b.path(&format!("{name}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .args(&names))
        .ok();
        run(Command::new("zstd")
            .args(["-q", "-19", "--rm", "-f"])
            .arg(&tar))
        .ok();
        PathBuf::from(format!("{}.zst", tar.display()))
    };
    let many: Vec<Value> = (0..120_000)
        .map(|n| json!({"name": format!("d{n}"), "dir": true}))
        .collect();
    let zero_sum = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";
    let cases = [
        (craft("many", json!(many), 0), "max_entries"),
        (
            craft(
                "huge",
                json!([{"name": "zeros", "size": 1u64 << 44, "sha256": zero_sum}]),
                0,
            ),
            "not enough space",
        ),
        (
            craft(
                "bomb",
                json!([{"name": "zeros", "size": 64u64 << 20, "sha256": zero_sum}]),
                64 << 20,
            ),
            "max_ratio",
        ),
    ];
    write_cli_config(&b, "[import]\nmax_ratio = 1000\n");
    for (archive, want) in cases {
        for cmd in [&["restore", "--import"][..], &["inspect"][..]] {
            let mut args = cmd.to_vec();
            args.push(archive.to_str().unwrap());
            let out = lazarus(&b, &args).err();
            assert!(out.stderr.contains(want), "{cmd:?} {want}: {out}");
        }
        assert_cli_left_nothing(&b);
    }
}
