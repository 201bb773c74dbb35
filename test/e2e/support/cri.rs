//! A Kubernetes node in miniature, for the CRI tests: a private containerd
//! with its CRI plugins on (runtime handlers `lazarus` and `runc`, a CNI
//! bridge of its own, the pod sandbox image imported), a private image
//! registry on loopback, and the test tree's CRI client (test/cri-client).
//!
//! Why a registry: containerd's CRI restores a checkpoint by pulling the
//! image the container was based on by its digest (`NAME@sha256:...`,
//! recorded at checkpoint time), and only an image pulled from a registry
//! has one. The registry is Debian's `docker-registry` on 127.0.0.1 (plain
//! HTTP, which containerd allows for loopback only).

use crate::support::apps;
use crate::support::cmd::{run_timeout, Out};
use crate::support::config::cri_client;
use crate::support::harness::{bridge_name, Daemons, Setup};
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The pod sandbox ("pause") image, imported into CRI's namespace before
/// the first pod (scripts/build-test-image.sh makes it).
const SANDBOX_IMAGE: &str = "docker.io/lazarus-test/pause:3.10";
/// containerd's CRI keeps its containers and images in this namespace.
pub const CRI_NAMESPACE: &str = "k8s.io";
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The handler that runs Lazarus's shim under runc's runtime type (see
/// `cri_config`).
pub const RUNC_TYPED: &str = "lazarus-runc-type";
/// A CRI call's deadline here; the client applies its own below it.
const CALL_TIMEOUT: Duration = Duration::from_secs(330);

pub struct CriHost {
    pub d: Daemons,
    registry: Child,
    /// `127.0.0.1:PORT` of the private registry.
    registry_addr: String,
}

impl CriHost {
    /// containerd with CRI, the registry with the busybox and Redis test
    /// images, both pulled through CRI.
    pub fn start(test: &str) -> CriHost {
        let images = apps::image_dir();
        for plugin in ["bridge", "host-local", "loopback"] {
            assert!(
                Path::new(CNI_BIN_DIR).join(plugin).is_file(),
                "prerequisite missing: CNI plugin {CNI_BIN_DIR}/{plugin} \
                 (scripts/setup-host.sh installs containernetworking-plugins)"
            );
        }
        let setup = Setup {
            cri_config: Some(cri_config),
            ..Default::default()
        };
        let d = Daemons::bare(test, &setup);
        let pause = images.join("pause-oci.tar");
        let mut import = d.ctr_cmd_ns(CRI_NAMESPACE, &["image", "import", pause.to_str().unwrap()]);
        run_timeout(&mut import, None, Duration::from_secs(120)).ok();
        let (registry, registry_addr) = start_registry(&d);
        let host = CriHost {
            d,
            registry,
            registry_addr,
        };
        for (name, tar) in [("busybox", "busybox-oci.tar"), ("redis", "redis-oci.tar")] {
            host.push(&images.join(tar), name);
            host.cri(&["pull", &host.image(name)]).ok();
        }
        host
    }

    /// The CRI runtime handler (RuntimeClass) for the runtime under test.
    pub fn handler(&self) -> &'static str {
        match self.d.is_lazarus() {
            true => "lazarus",
            false => "runc",
        }
    }

    /// Whether this containerd restores checkpoints through CRI (2.1 does;
    /// 1.7 has no CheckpointContainer).
    pub fn can_checkpoint(&self) -> bool {
        self.d.cfg.containerd_version != "1.7"
    }

    /// The registry's name for a test image, e.g. `busybox`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/lazarus-test/{name}:latest", self.registry_addr)
    }

    /// `cri-client --endpoint <this containerd> ARGS`.
    pub fn cri(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(cri_client());
        cmd.arg("--endpoint")
            .arg(self.d.containerd_sock())
            .args(args);
        run_timeout(&mut cmd, None, CALL_TIMEOUT)
    }

    /// A pod sandbox with the runtime under test; its cgroups under the
    /// set's parent, so the set's clean-up finds every process.
    pub fn run_pod(&self, name: &str) -> String {
        self.run_pod_on(name, self.handler())
    }

    /// [`Self::run_pod`] with another runtime handler.
    pub fn run_pod_on(&self, name: &str, handler: &str) -> String {
        let logs = self.d.path(&format!("pods/{name}"));
        fs::create_dir_all(&logs).unwrap();
        let parent = format!("/{}", self.d.id);
        let args = [
            "runp",
            "--name",
            name,
            "--runtime",
            handler,
            "--log-dir",
            logs.to_str().unwrap(),
            "--cgroup-parent",
            &parent,
        ];
        self.cri(&args).ok().text().to_string()
    }

    /// Creates (not starts) container `name` in `pod` from `image` (an
    /// image reference, or a checkpoint archive's path to restore).
    pub fn create(&self, pod: &str, name: &str, image: &str, cmd: &[&str]) -> String {
        self.create_with(pod, name, image, &[], cmd)
    }

    /// [`Self::create`] with more of cri-client's `create` flags.
    pub fn create_with(
        &self,
        pod: &str,
        name: &str,
        image: &str,
        flags: &[&str],
        cmd: &[&str],
    ) -> String {
        let mut args = vec!["create", pod, "--name", name, "--image", image];
        args.extend(flags);
        if !cmd.is_empty() {
            args.push("--");
            args.extend(cmd);
        }
        self.cri(&args).ok().text().to_string()
    }

    pub fn start_container(&self, id: &str) {
        self.cri(&["start", id]).ok();
    }

    /// The container's status as the client prints it (JSON).
    pub fn inspect(&self, id: &str) -> Value {
        let out = self.cri(&["inspect", id]).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("inspect: {e}: {out}"))
    }

    /// `CONTAINER_RUNNING`, `CONTAINER_EXITED`, ...
    pub fn state(&self, id: &str) -> String {
        self.inspect(id)["state"].as_str().unwrap_or("").to_string()
    }

    pub fn exec(&self, id: &str, cmd: &[&str]) -> Out {
        let mut args = vec!["exec", id, "--"];
        args.extend(cmd);
        self.cri(&args)
    }

    pub fn checkpoint(&self, id: &str, archive: &Path) -> Out {
        self.cri(&["checkpoint", id, archive.to_str().unwrap()])
    }

    /// The runtime (shim) containerd runs container `id` with.
    pub fn runtime_of(&self, id: &str) -> String {
        let out = self
            .d
            .ctr_cmd_ns(CRI_NAMESPACE, &["containers", "info", id])
            .output()
            .expect("ctr containers info");
        let info: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        info["Runtime"]["Name"].as_str().unwrap_or("").to_string()
    }

    /// `skopeo copy` of an OCI archive into the registry as `name:latest`.
    fn push(&self, tar: &Path, name: &str) {
        let dest = format!("docker://{}", self.image(name));
        let src = format!("oci-archive:{}", tar.display());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dest]);
        run_timeout(&mut cmd, None, Duration::from_secs(120)).ok();
    }
}

impl Drop for CriHost {
    /// Pods are stopped and removed through CRI first, so that CNI releases
    /// their addresses and veths; the daemon set's clean-up does the rest.
    fn drop(&mut self) {
        let pods = self.cri(&["pods"]);
        let list: Value = serde_json::from_str(&pods.stdout).unwrap_or(json!([]));
        for pod in list.as_array().into_iter().flatten() {
            if let Some(id) = pod["id"].as_str() {
                let _ = self.cri(&["stopp", id]);
                let _ = self.cri(&["rmp", id]);
            }
        }
        let _ = self.registry.kill();
        let _ = self.registry.wait();
    }
}

/// containerd's CRI configuration for the set `d`: the runtime handlers,
/// the sandbox image, a CNI bridge network of the set's own (named like a
/// Docker bridge of the set, so the set's clean-up removes it), network
/// namespaces under the set's state directory.
fn cri_config(d: &Daemons) -> String {
    let cni = d.path("cni");
    fs::create_dir_all(&cni).unwrap();
    let subnet = d.free_subnet("10.214");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": format!("lazarus-{}", d.id),
        "plugins": [{
            "type": "bridge",
            "bridge": bridge_name(&d.id),
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": format!("{subnet}.0/24") }]],
                "dataDir": d.path("cni-ipam"),
            },
        }],
    });
    fs::write(cni.join("10-lazarus.conflist"), conflist.to_string()).unwrap();
    let conf_dir = cni.display();
    // `lazarus-runc-type` is Lazarus's shim under runc's runtime type, by
    // path: the one way containerd 2.1's CRI asks a runtime other than
    // runc for its features (it introspects type io.containerd.runc.v2
    // only; 2.4 asks every runtime). docs/integration.md explains it.
    let shim = crate::support::config::lazarus_shim();
    let runtimes = |p: &str| {
        format!(
            "[{p}.containerd]\n  default_runtime_name = \"runc\"\n\
             [{p}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [{p}.containerd.runtimes.lazarus]\n  runtime_type = \"io.containerd.lazarus.v2\"\n\
             [{p}.containerd.runtimes.{RUNC_TYPED}]\n  runtime_type = \"io.containerd.runc.v2\"\n  \
             runtime_path = \"{}\"\n",
            shim.display()
        )
    };
    // Root here lacks CAP_SYS_RESOURCE, so no process may lower its OOM
    // score below its parent's; CRI asks -998 for a pod's sandbox unless
    // told to keep to what it is allowed (as for rootless containerd).
    let restrict = "restrict_oom_score_adj = true\n";
    let stream = "stream_server_address = \"127.0.0.1\"\nstream_server_port = \"0\"\n";
    if d.cfg.containerd_version == "1.7" {
        let p = r#"plugins."io.containerd.grpc.v1.cri""#;
        return format!(
            "[{p}]\nsandbox_image = \"{SANDBOX_IMAGE}\"\nnetns_mounts_under_state_dir = true\n{restrict}{stream}\
             [{p}.cni]\n  bin_dir = \"{CNI_BIN_DIR}\"\n  conf_dir = \"{conf_dir}\"\n{}",
            runtimes(p)
        );
    }
    let (images, runtime) = (
        r#"plugins."io.containerd.cri.v1.images""#,
        r#"plugins."io.containerd.cri.v1.runtime""#,
    );
    format!(
        "[{images}.pinned_images]\n  sandbox = \"{SANDBOX_IMAGE}\"\n\
         [{runtime}]\nnetns_mounts_under_state_dir = true\n{restrict}\
         [{runtime}.cni]\n  bin_dirs = [\"{CNI_BIN_DIR}\"]\n  conf_dir = \"{conf_dir}\"\n{}\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n{stream}",
        runtimes(runtime)
    )
}

/// Starts Debian's docker-registry on a free loopback port, its storage in
/// the set's directory (its command line names that directory, so the
/// set's clean-up stops it even if this process dies).
fn start_registry(d: &Daemons) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config: PathBuf = d.path("registry.yml");
    let storage = d.path("registry");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            storage.display()
        ),
    )
    .unwrap();
    let log = fs::File::create(d.path("registry.log")).unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prerequisite missing: docker-registry (scripts/setup-host.sh installs it)");
    let answered = crate::support::cmd::poll(Duration::from_secs(30), || {
        registry_answers(&addr).then_some(())
    });
    if answered.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(d.path("registry.log")).unwrap_or_default();
        panic!("the registry on {addr} did not answer within 30 s; its log:\n{log}");
    }
    (child, addr)
}

/// Whether the registry's API root answers 200.
fn registry_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.lines().next().is_some_and(|l| l.contains(" 200 "))
}
