//! Suite configuration from the environment, and the prerequisite checks.
//! A missing prerequisite fails the test with a message saying what to do;
//! nothing is ever skipped.

use crate::support::cmd::{run, run_timeout};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The test image, as `ctr` and as Docker name it.
pub const IMAGE_CTR: &str = "docker.io/lazarus-test/busybox:latest";
pub const IMAGE_DOCKER: &str = "lazarus-test/busybox:latest";

/// A binary of the workspace the suite drives. None is a Cargo dependency of
/// this package (a test target sees only its own package's binaries, and the
/// suite is a package of its own): `cargo build --workspace --bins` builds
/// them (test/run-e2e.sh does), and each is looked for where `var` names it,
/// else in the target directory this test binary was built in.
struct Bin {
    /// Names the binary's path, overriding the target directory.
    var: &'static str,
    /// Its file name in the target directory.
    name: &'static str,
    what: &'static str,
}

/// The Lazarus shim: its directory comes first on the daemons' PATH.
const SHIM: Bin = Bin {
    var: "LAZARUS_SHIM_BIN",
    name: "containerd-shim-lazarus-v2",
    what: "the Lazarus shim",
};
const CLI: Bin = Bin {
    var: "LAZARUS_CLI_BIN",
    name: "lazarus",
    what: "the lazarus CLI",
};
const CRI_CLIENT: Bin = Bin {
    var: "LAZARUS_CRI_CLIENT_BIN",
    name: "cri-client",
    what: "the CRI client (test/cri-client)",
};

pub struct Config {
    /// Runtime under test, e.g. `io.containerd.lazarus.v2`.
    pub runtime: String,
    /// `1.7` or `2.1`.
    pub containerd_version: String,
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub dockerd: PathBuf,
    pub docker: PathBuf,
    /// PATH given to the daemons: the Lazarus shim's directory first, then
    /// containerd's own directory (so containerd 2.1 uses its own runc shim).
    pub daemon_path: String,
    pub image_oci_tar: PathBuf,
    pub image_docker_tar: PathBuf,
    /// Parent of every daemon set's private directory.
    pub base_dir: PathBuf,
}

fn env_or(key: &str, default: &str) -> String {
    env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn require_file(what: &str, path: &Path, hint: &str) {
    if !path.is_file() {
        panic!(
            "prerequisite missing: {what} not found at {} ({hint})",
            path.display()
        );
    }
}

/// Finds `name` in the directories of a PATH-style list.
fn which_in(path_list: &str, name: &str) -> Option<PathBuf> {
    path_list
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `io.containerd.NAME.v2` -> `containerd-shim-NAME-v2`.
pub fn shim_binary_name(runtime: &str) -> String {
    let parts: Vec<&str> = runtime.split('.').collect();
    match parts.as_slice() {
        [.., name, version] if parts.len() >= 3 => format!("containerd-shim-{name}-{version}"),
        _ => panic!("cannot derive a shim binary name from runtime {runtime:?}"),
    }
}

fn check_version(binary: &Path, want: &str) {
    let out = run(Command::new(binary).arg("--version"));
    let text = out.stdout.clone();
    let ok = text.contains(&format!(" {want}.")) || text.contains(&format!(" v{want}."));
    if out.code != Some(0) || !ok {
        panic!(
            "prerequisite: {} is not containerd {want}: {out}",
            binary.display()
        );
    }
}

/// The repository: the e2e suite is the package in test/e2e.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where Cargo put the workspace's binaries: the profile directory of this
/// test binary (`<target>/<profile>/deps/e2e-<hash>` -> `<target>/<profile>`,
/// whatever the target directory, profile or target triple), or, for a test
/// binary run from elsewhere, `$CARGO_TARGET_DIR` (else `<workspace>/target`)
/// `/debug`.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().ok();
    if let Some(deps) = exe.as_deref().and_then(Path::parent) {
        if deps.file_name().is_some_and(|n| n == "deps") {
            if let Some(profile) = deps.parent() {
                return profile.to_path_buf();
            }
        }
    }
    let target = env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty());
    let target = target.map_or_else(|| repo_root().join("target"), |t| repo_root().join(t));
    target.join("debug")
}

/// `bin`'s path, checked: a missing binary fails the test saying what to
/// build. A relative path in `bin.var` is taken from the workspace root
/// (Cargo runs the suite in test/e2e).
fn binary(bin: &Bin) -> PathBuf {
    let (path, hint) = match env::var_os(bin.var).filter(|v| !v.is_empty()) {
        Some(path) => (repo_root().join(path), format!("named by {}", bin.var)),
        None => (
            profile_dir().join(bin.name),
            format!(
                "build the workspace's binaries first: cargo build --workspace --bins; \
                 or name it in {}",
                bin.var
            ),
        ),
    };
    require_file(bin.what, &path, &hint);
    path
}

/// The Lazarus shim, `containerd-shim-lazarus-v2` (so that containerd finds
/// it for `io.containerd.lazarus.v2` in its directory).
pub fn lazarus_shim() -> PathBuf {
    let shim = binary(&SHIM);
    if shim.file_name().is_none_or(|n| n != SHIM.name) {
        panic!(
            "prerequisite: {} names {}, not a `{}`: containerd looks the shim up by that name",
            SHIM.var,
            shim.display(),
            SHIM.name
        );
    }
    shim
}

/// The `lazarus` CLI (test/run-e2e.sh builds the workspace's binaries
/// first).
pub fn lazarus_cli() -> PathBuf {
    binary(&CLI)
}

/// The test tree's CRI client (test/cri-client), built by the same
/// workspace build.
pub fn cri_client() -> PathBuf {
    binary(&CRI_CLIENT)
}

/// Runs one of the (idempotent) image build scripts in scripts/; returns
/// the directory it writes the image tars to.
pub fn build_images(script: &str, timeout: Duration) -> PathBuf {
    let path = repo_root().join("scripts").join(script);
    let out = run_timeout(Command::new("bash").arg(&path), None, timeout);
    if out.code != Some(0) {
        panic!("prerequisite: scripts/{script} failed: {out}");
    }
    PathBuf::from(env_or("LAZARUS_IMAGE_DIR", "/var/cache/lazarus-test"))
}

/// Builds (or confirms up to date) the test image tars, once per process.
fn build_image() -> (PathBuf, PathBuf) {
    let dir = build_images("build-test-image.sh", Duration::from_secs(300));
    let (oci, docker) = (dir.join("busybox-oci.tar"), dir.join("busybox-docker.tar"));
    require_file(
        "OCI image tar",
        &oci,
        "scripts/build-test-image.sh should have made it",
    );
    require_file(
        "docker-archive tar",
        &docker,
        "scripts/build-test-image.sh should have made it",
    );
    (oci, docker)
}

fn load() -> Config {
    // The workspace's binaries, all checked here so that a missing one
    // fails every test the same way, whichever it needs.
    let lazarus_shim = lazarus_shim();
    lazarus_cli();
    cri_client();
    let runtime = env_or("LAZARUS_TEST_RUNTIME", "io.containerd.lazarus.v2");
    let containerd_version = env_or("LAZARUS_TEST_CONTAINERD", "1.7");
    let bin_dir = match containerd_version.as_str() {
        "1.7" => PathBuf::from("/usr/bin"),
        "2.1" => PathBuf::from("/opt/lazarus/containerd-2.1/usr/bin"),
        v => panic!("LAZARUS_TEST_CONTAINERD={v:?}: supported values are 1.7 and 2.1"),
    };
    let hint = "run scripts/setup-host.sh";
    let containerd = bin_dir.join("containerd");
    let ctr = bin_dir.join("ctr");
    require_file("containerd", &containerd, hint);
    require_file("ctr", &ctr, hint);
    check_version(&containerd, &containerd_version);
    let dockerd = PathBuf::from(env_or("LAZARUS_TEST_DOCKERD", "/usr/sbin/dockerd"));
    let docker = PathBuf::from(env_or("LAZARUS_TEST_DOCKER", "/usr/bin/docker"));
    require_file("dockerd", &dockerd, hint);
    require_file("docker client (Debian's docker-cli 26)", &docker, hint);

    let inherited = env::var("PATH").unwrap_or_default();
    // ip: the migration tests put a "host" in a network namespace.
    for tool in ["criu", "tmux", "runc", "ip", "tc", "pgrep", "iptables"] {
        if which_in(&inherited, tool).is_none() {
            panic!("prerequisite missing: `{tool}` is not on PATH ({hint})");
        }
    }
    let criu = run(Command::new("criu").arg("--version"));
    assert_eq!(
        criu.code,
        Some(0),
        "prerequisite: criu does not run: {criu}"
    );

    let shim_dir = lazarus_shim.parent().unwrap();
    let daemon_path = format!("{}:{}:{inherited}", shim_dir.display(), bin_dir.display());
    let shim = shim_binary_name(&runtime);
    if which_in(&daemon_path, &shim).is_none() {
        panic!("prerequisite missing: no `{shim}` (runtime {runtime}) on the daemons' PATH {daemon_path}");
    }

    let (image_oci_tar, image_docker_tar) = build_image();
    let base_dir = PathBuf::from(env_or("LAZARUS_E2E_DIR", "/var/lib/lazarus-e2e"));
    std::fs::create_dir_all(&base_dir).expect("create base dir");
    crate::support::cleanup::purge_stale(&base_dir);
    Config {
        runtime,
        containerd_version,
        containerd,
        ctr,
        dockerd,
        docker,
        daemon_path,
        image_oci_tar,
        image_docker_tar,
        base_dir,
    }
}

/// The configuration, checked once per test process. If a check fails every
/// test that asks fails with the same message.
pub fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(load)
}
