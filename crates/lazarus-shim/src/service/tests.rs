//! TaskService against a fake runtime and a channel event sink.

use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use containerd_shim_protos::api::Status as ApiStatus;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use oci_spec::runtime::{LinuxResources, Spec};

use super::*;
use crate::events::ChannelSink;
use crate::runtime::{CreateOptions, ExecOptions, ProcessIo};
use containerd_shim_protos::shim::oci::CheckpointOptions;
use lazarus_core::checkpoint::postcopy::{PageMode, PageServer};
use lazarus_core::criu::{rpc, Call, Criu, NotifyFn, Outcome};

/// Lets a test act while a runtime helper or CRIU "runs": the fake says
/// when it is there (with a pid, if any) and waits to be released.
struct Gate {
    entered: Sender<i32>,
    release: Mutex<Receiver<()>>,
}

impl Gate {
    fn new() -> (Gate, Receiver<i32>, Sender<()>) {
        let (entered, at) = channel();
        let (go, release) = channel();
        let gate = Gate {
            entered,
            release: Mutex::new(release),
        };
        (gate, at, go)
    }

    fn pass(&self, pid: i32) {
        self.entered.send(pid).unwrap();
        let released = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        released.expect("the test never released the gate");
    }
}

#[derive(Default)]
struct FakeRuntime {
    calls: Mutex<Vec<String>>,
    next_pid: Mutex<i32>,
    /// Held inside `exec`, after the process "exists".
    exec_gate: Option<Gate>,
    /// `exec` fails (no such program, say).
    fail_exec: bool,
    /// `adopt` fails.
    fail_adopt: bool,
}

impl FakeRuntime {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn pid(&self) -> i32 {
        let mut p = self.next_pid.lock().unwrap();
        *p += 100;
        *p
    }
}

impl Runtime for FakeRuntime {
    fn create(&self, opts: &CreateOptions) -> Result<i32> {
        assert!(matches!(opts.io, ProcessIo::Stdio(_)));
        self.record(format!("create {}", opts.id));
        // Our own pid: checkpoint code reads the init's /proc entries.
        Ok(std::process::id() as i32)
    }
    fn start(&self, id: &str, _: &Path) -> Result<()> {
        self.record(format!("start {id}"));
        Ok(())
    }
    fn exec(&self, opts: &ExecOptions) -> Result<i32> {
        self.record(format!("exec {}", opts.id));
        if self.fail_exec {
            return Err(Error::Runtime(
                "exec: \"nope\": executable file not found".into(),
            ));
        }
        let pid = self.pid();
        if let Some(gate) = &self.exec_gate {
            gate.pass(pid);
        }
        Ok(pid)
    }
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.record(format!("kill {id} {signal} {all}"));
        Ok(())
    }
    fn delete(&self, id: &str, _: &Path, force: bool) -> Result<()> {
        self.record(format!("delete {id} {force}"));
        Ok(())
    }
    fn pause(&self, id: &str) -> Result<()> {
        self.record(format!("pause {id}"));
        Ok(())
    }
    fn resume(&self, id: &str) -> Result<()> {
        self.record(format!("resume {id}"));
        Ok(())
    }
    fn pids(&self, _: &str) -> Result<Vec<i32>> {
        Ok(vec![100, 200])
    }
    fn stats(&self, _: &str) -> Result<Any> {
        Ok(Any::new())
    }
    fn update(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let limit = r
            .memory()
            .as_ref()
            .and_then(|m| m.limit())
            .unwrap_or_default();
        self.record(format!("update {id} {limit}"));
        Ok(())
    }
    fn adopt(&self, id: &str, _: &Path, pid: i32) -> Result<()> {
        self.record(format!("adopt {id} {pid}"));
        match self.fail_adopt {
            true => Err(Error::Runtime(format!("adopt restored {id}: test"))),
            false => Ok(()),
        }
    }
    fn restore_network(&self, id: &str, _: &Path, _: &Spec, pid: i32) -> Result<()> {
        self.record(format!("restore_network {id} {pid}"));
        Ok(())
    }
    fn memory_cgroup(&self, _: &str) -> Option<PathBuf> {
        None
    }
}

/// Answers like CRIU 4.2.1 and remembers every request.
#[derive(Default)]
struct FakeCriu {
    requests: Mutex<Vec<rpc::Criu_req>>,
    fail_dump: bool,
    /// Held inside a dump.
    dump_gate: Option<Gate>,
    /// Each dump also writes a page image of this many zero bytes.
    page_image: Option<usize>,
    /// A restore says it is there, then runs until it is called off.
    restore_until_called_off: Option<Sender<()>>,
    /// A restore panics (a bug anywhere under Start).
    panic_in_restore: bool,
}

const RESTORED_PID: i32 = 4242;

impl Criu for FakeCriu {
    fn call(&self, call: Call, notify: &mut NotifyFn) -> lazarus_core::Result<Outcome> {
        let request = call.request;
        let mut response = rpc::Criu_resp::new();
        response.set_type(request.type_());
        response.set_success(true);
        match request.type_() {
            rpc::Criu_req_type::VERSION => {
                let mut v = rpc::Criu_version::new();
                v.set_major_number(4);
                v.set_minor_number(2);
                v.set_sublevel(1);
                response.version = MessageField::some(v);
            }
            rpc::Criu_req_type::DUMP if request.opts.lazy_pages() => {
                // As CRIU's lazy dump does: the images, then "ready", then
                // it serves pages until the client is done or calls it off.
                let dir = format!("/proc/self/fd/{}", request.opts.images_dir_fd());
                std::fs::write(Path::new(&dir).join("inventory.img"), b"").unwrap();
                notify("status-ready", 0)?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !call.cancel.is_some_and(|called_off| called_off()) {
                    assert!(std::time::Instant::now() < deadline, "never called off");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                self.requests.lock().unwrap().push(request);
                return Err(lazarus_core::criu::CriuError::new(
                    lazarus_core::criu::CriuOp::Dump,
                    lazarus_core::criu::CriuFailure::Cancelled,
                )
                .into());
            }
            rpc::Criu_req_type::DUMP if request.opts.ps.has_address() => {
                // As CRIU's dump to a page server does: the images (the
                // pages went to the server), then it asks at post-dump
                // whether to end the tree; a failed answer resumes it and
                // fails the dump.
                let dir = format!("/proc/self/fd/{}", request.opts.images_dir_fd());
                std::fs::write(Path::new(&dir).join("inventory.img"), b"").unwrap();
                if notify("post-dump", 0).is_err() {
                    response.set_success(false);
                    response.set_cr_errmsg("RPC client reported script error".into());
                }
            }
            rpc::Criu_req_type::DUMP if self.dump_gate.is_some() => {
                self.dump_gate.as_ref().unwrap().pass(0);
            }
            rpc::Criu_req_type::DUMP if self.fail_dump => {
                response.set_success(false);
                response.set_cr_errmsg("cannot dump: test".into());
            }
            rpc::Criu_req_type::DUMP => {
                // As CRIU does: every dump writes its index (restore
                // refuses an image without one).
                let dir = format!("/proc/self/fd/{}", request.opts.images_dir_fd());
                std::fs::write(Path::new(&dir).join("inventory.img"), b"").unwrap();
                if let Some(bytes) = self.page_image {
                    std::fs::write(Path::new(&dir).join("pages-1.img"), vec![0u8; bytes]).unwrap();
                }
            }
            rpc::Criu_req_type::RESTORE if self.panic_in_restore => panic!("restore: test"),
            rpc::Criu_req_type::RESTORE if self.restore_until_called_off.is_some() => {
                self.restore_until_called_off
                    .as_ref()
                    .unwrap()
                    .send(())
                    .unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !call.cancel.is_some_and(|called_off| called_off()) {
                    assert!(std::time::Instant::now() < deadline, "never called off");
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.requests.lock().unwrap().push(request);
                return Err(lazarus_core::criu::CriuError::new(
                    lazarus_core::criu::CriuOp::Restore,
                    lazarus_core::criu::CriuFailure::Cancelled,
                )
                .into());
            }
            rpc::Criu_req_type::RESTORE => {
                // As CRIU does: namespaces first, then the rest.
                notify("setup-namespaces", RESTORED_PID)?;
                notify("post-restore", RESTORED_PID)?;
                let mut r = rpc::Criu_restore_resp::new();
                r.set_pid(RESTORED_PID);
                response.restore = MessageField::some(r);
            }
            _ => {}
        }
        self.requests.lock().unwrap().push(request);
        Ok(Outcome {
            response,
            received_fd: None,
        })
    }
}

impl FakeCriu {
    fn last(&self, kind: rpc::Criu_req_type) -> rpc::Criu_opts {
        let requests = self.requests.lock().unwrap();
        let req = requests
            .iter()
            .rev()
            .find(|r| r.type_() == kind)
            .expect("no such CRIU request");
        req.opts.clone().unwrap()
    }
}

struct Fixture {
    service: Arc<TaskService>,
    runtime: Arc<FakeRuntime>,
    criu: Arc<FakeCriu>,
    events: Receiver<TaskEvent>,
    bundle: tempfile::TempDir,
}

fn fixture() -> Fixture {
    fixture_with(FakeCriu::default(), "default")
}

fn fixture_with(criu: FakeCriu, namespace: &str) -> Fixture {
    fixture_of(FakeRuntime::default(), criu, namespace)
}

fn fixture_of(runtime: FakeRuntime, criu: FakeCriu, namespace: &str) -> Fixture {
    let criu = Arc::new(criu);
    let runtime = Arc::new(runtime);
    let (sink, events) = ChannelSink::new();
    let bundle = tempfile::tempdir().unwrap();
    Spec::default()
        .save(bundle.path().join("config.json"))
        .unwrap();
    let settings = Settings {
        namespace: namespace.into(),
        console_dir: bundle.path().join("c"),
        checkpoint_exit: HashMap::new(),
        logs: bundle.path().join("logs"),
        compress_pages: true,
        restore_scratch: bundle.path().join("work"),
        store_docker_checkpoints: false,
        store_root: bundle.path().join("store"),
        memory_root: PathBuf::new(),
    };
    let service = Arc::new(TaskService::new(
        runtime.clone(),
        criu.clone(),
        Arc::new(sink),
        settings,
        Arc::default(),
    ));
    Fixture {
        service,
        runtime,
        criu,
        events,
        bundle,
    }
}

impl Fixture {
    fn create(&self, id: &str) -> Result<CreateTaskResponse> {
        self.service.create(&CreateTaskRequest {
            id: id.into(),
            bundle: self.bundle.path().to_string_lossy().into_owned(),
            ..Default::default()
        })
    }
    /// Creates and starts the task `id`.
    fn run(&self, id: &str) {
        self.create(id).unwrap();
        let start = StartRequest {
            id: id.into(),
            ..Default::default()
        };
        self.service.start(&start).unwrap();
    }
    fn topics(&self) -> Vec<String> {
        self.events.try_iter().map(|e| e.topic).collect()
    }
    fn status(&self, id: &str, exec_id: &str) -> containerd_shim_protos::api::Status {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.service
            .state(&req)
            .unwrap()
            .status
            .enum_value()
            .unwrap()
    }
}

fn code(result: Result<impl Sized>) -> ttrpc::Code {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

#[test]
fn init_lifecycle_publishes_events_in_order_and_reports_the_exit() {
    let f = fixture();
    let pid = f.create("c1").unwrap().pid;
    assert_eq!(f.status("c1", ""), ApiStatus::CREATED);
    let start = f
        .service
        .start(&StartRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(start.pid, pid);
    assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);

    f.service.process_exit(pid as i32, 3);
    let wait = f
        .service
        .wait(&WaitRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(wait.exit_status, 3);
    assert_eq!(f.status("c1", ""), ApiStatus::STOPPED);

    let deleted = f
        .service
        .delete(&DeleteRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 3));
    assert_eq!(
        f.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert_eq!(
        f.runtime.calls(),
        ["create c1", "start c1", "delete c1 false"]
    );
    assert_eq!(
        code(f.service.state(&StateRequest {
            id: "c1".into(),
            ..Default::default()
        })),
        ttrpc::Code::NOT_FOUND
    );
}

#[test]
fn exits_of_unknown_pids_are_ignored() {
    let f = fixture();
    let pid = f.create("c1").unwrap().pid as i32;
    f.service.process_exit(pid + 1, 0);
    assert!(f.topics().iter().all(|t| t != "/tasks/exit"));
    assert_eq!(f.status("c1", ""), ApiStatus::CREATED);
}

/// containerd's forced delete of a task that was never started: Kill, Wait,
/// Delete. The waiting init dies of the signal; its exit must be reported.
#[test]
fn a_created_task_killed_before_start_exits_and_can_be_deleted() {
    let f = fixture();
    let pid = f.create("c1").unwrap().pid as i32;
    let kill = KillRequest {
        id: "c1".into(),
        signal: 9,
        all: true,
        ..Default::default()
    };
    f.service.kill(&kill).unwrap();
    f.service.process_exit(pid, 137);
    let wait = f
        .service
        .wait(&WaitRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(wait.exit_status, 137);
    assert_eq!(f.status("c1", ""), ApiStatus::STOPPED);
    let start = StartRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.start(&start)),
        ttrpc::Code::FAILED_PRECONDITION
    );
    let delete = DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(f.service.delete(&delete).unwrap().exit_status, 137);
    assert_eq!(
        f.topics(),
        ["/tasks/create", "/tasks/exit", "/tasks/delete"]
    );
    assert_eq!(
        f.runtime.calls(),
        ["create c1", "kill c1 9 true", "delete c1 false"]
    );
}

/// Delete of a created task removes its waiting init by force; a Wait
/// already waiting returns (the init's exit may come after the delete).
#[test]
fn deleting_a_created_task_releases_its_waiters() {
    let f = fixture();
    f.create("c1").unwrap();
    // What a Wait under way waits on.
    let exit = f.service.get("c1").unwrap().lock().init.exit.clone();
    let delete = DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    f.service.delete(&delete).unwrap();
    assert_eq!(exit.get().map(|e| e.code), Some(137));
    assert_eq!(f.runtime.calls(), ["create c1", "delete c1 true"]);
    assert_eq!(
        code(f.service.state(&StateRequest {
            id: "c1".into(),
            ..Default::default()
        })),
        ttrpc::Code::NOT_FOUND
    );
}

#[test]
fn bad_requests_get_the_right_codes() {
    let f = fixture();
    std::fs::write(f.bundle.path().join("config.json"), "{not json").unwrap();
    assert_eq!(code(f.create("bad")), ttrpc::Code::INVALID_ARGUMENT);
    assert!(
        f.runtime.calls().is_empty(),
        "nothing may reach the runtime for a bad spec"
    );

    Spec::default()
        .save(f.bundle.path().join("config.json"))
        .unwrap();
    let pid = f.create("c1").unwrap().pid as i32;
    assert_eq!(code(f.create("c1")), ttrpc::Code::ALREADY_EXISTS);
    f.service
        .start(&StartRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();

    let kill = |exec_id: &str| KillRequest {
        id: "c1".into(),
        exec_id: exec_id.into(),
        signal: 9,
        ..Default::default()
    };
    assert_eq!(code(f.service.kill(&kill("nope"))), ttrpc::Code::NOT_FOUND);
    let delete = DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.delete(&delete)),
        ttrpc::Code::FAILED_PRECONDITION
    );
    assert_eq!(
        code(f.service.start(&StartRequest {
            id: "c1".into(),
            ..Default::default()
        })),
        ttrpc::Code::FAILED_PRECONDITION
    );
    let missing = StateRequest {
        id: "other".into(),
        ..Default::default()
    };
    assert_eq!(code(f.service.state(&missing)), ttrpc::Code::NOT_FOUND);

    f.service.process_exit(pid, 137);
    assert_eq!(code(f.service.kill(&kill(""))), ttrpc::Code::NOT_FOUND);
    let checkpoint = CheckpointTaskRequest {
        id: "c1".into(),
        ..Default::default()
    };
    // A stopped task cannot be checkpointed.
    assert_eq!(
        code(f.service.checkpoint(&checkpoint)),
        ttrpc::Code::FAILED_PRECONDITION
    );
    f.service.delete(&delete).unwrap();
}

#[test]
fn exec_lifecycle() {
    let f = fixture();
    let init = f.create("c1").unwrap().pid as i32;
    let spec = serde_json::to_vec(&oci_spec::runtime::Process::default()).unwrap();
    let exec = |exec_id: &str| ExecProcessRequest {
        id: "c1".into(),
        exec_id: exec_id.into(),
        spec: MessageField::some(Any {
            value: spec.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.exec(&exec("e1"))),
        ttrpc::Code::FAILED_PRECONDITION,
        "exec before start"
    );
    f.service
        .start(&StartRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    f.service.exec(&exec("e1")).unwrap();
    assert_eq!(
        code(f.service.exec(&exec("e1"))),
        ttrpc::Code::ALREADY_EXISTS
    );
    let start = StartRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let pid = f.service.start(&start).unwrap().pid as i32;
    assert_ne!(pid, init);
    let delete = DeleteRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.delete(&delete)),
        ttrpc::Code::FAILED_PRECONDITION
    );

    f.service.process_exit(pid, 5);
    assert_eq!(f.status("c1", "e1"), ApiStatus::STOPPED);
    assert_eq!(
        f.status("c1", ""),
        ApiStatus::RUNNING,
        "an exec's exit leaves the init running"
    );
    assert_eq!(f.service.delete(&delete).unwrap().exit_status, 5);
    let exits: Vec<TaskEvent> = f
        .events
        .try_iter()
        .filter(|e| e.topic == "/tasks/exit")
        .collect();
    let exit = exits[0].message.downcast_ref::<TaskExit>().unwrap();
    assert_eq!((exit.id.as_str(), exit.exit_status), ("e1", 5));
}

#[test]
fn pause_and_resume_follow_the_state_machine() {
    let f = fixture();
    f.create("c1").unwrap();
    let pause = PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    let resume = ResumeRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.pause(&pause)),
        ttrpc::Code::FAILED_PRECONDITION
    );
    f.service
        .start(&StartRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .unwrap();
    f.service.pause(&pause).unwrap();
    assert_eq!(f.status("c1", ""), ApiStatus::PAUSED);
    assert_eq!(
        code(f.service.pause(&pause)),
        ttrpc::Code::FAILED_PRECONDITION
    );
    f.service.resume(&resume).unwrap();
    assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);
    let topics = f.topics();
    assert!(
        topics.ends_with(&["/tasks/paused".to_string(), "/tasks/resumed".to_string()]),
        "{topics:?}"
    );
}

#[test]
fn update_decodes_oci_resources() {
    let f = fixture();
    f.create("c1").unwrap();
    let resources = r#"{"memory":{"limit":67108864}}"#;
    let req = UpdateTaskRequest {
        id: "c1".into(),
        resources: MessageField::some(Any {
            value: resources.as_bytes().to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    f.service.update(&req).unwrap();
    assert!(f
        .runtime
        .calls()
        .contains(&"update c1 67108864".to_string()));
    let bad = UpdateTaskRequest {
        id: "c1".into(),
        resources: MessageField::some(Any {
            value: b"[1]".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(code(f.service.update(&bad)), ttrpc::Code::INVALID_ARGUMENT);
}

fn checkpoint_options(o: CheckpointOptions) -> MessageField<Any> {
    use containerd_shim_protos::protobuf::Message;
    MessageField::some(Any {
        type_url: "containerd.runc.v1.CheckpointOptions".into(),
        value: o.write_to_bytes().unwrap(),
        ..Default::default()
    })
}

#[test]
fn checkpoint_then_restore_reapplies_the_dump_options() {
    let f = fixture();
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let dir = images.path().join("cp");
    let opts = CheckpointOptions {
        open_tcp: true,
        file_locks: true,
        exit: false,
        ..Default::default()
    };
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            path: dir.to_string_lossy().into_owned(),
            options: checkpoint_options(opts),
            ..Default::default()
        })
        .unwrap();
    let dump = f.criu.last(rpc::Criu_req_type::DUMP);
    assert!(dump.tcp_established() && dump.file_locks() && dump.leave_running());
    assert!(!dump.ext_unix_sk());
    assert_eq!(
        dump.empty_ns(),
        libc::CLONE_NEWNET as u32,
        "Spec::default(): a network namespace of its own, no hooks, no CAP_NET_ADMIN: only lo, \
         which the restore brings up again, so it is not dumped"
    );
    assert_eq!(
        f.status("c1", ""),
        ApiStatus::RUNNING,
        "leave-running keeps the task running"
    );
    assert!(f.topics().contains(&"/tasks/checkpointed".to_string()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // A second container restores from it: nothing runs at Create...
    let created = f
        .service
        .create(&CreateTaskRequest {
            id: "c2".into(),
            bundle: f.bundle.path().to_string_lossy().into_owned(),
            checkpoint: dir.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(created.pid, 0);
    assert!(!f.runtime.calls().contains(&"create c2".to_string()));
    // ...and Start restores with the dump's options, without being told.
    let started = f
        .service
        .start(&StartRequest {
            id: "c2".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(started.pid, RESTORED_PID as u32);
    let restore = f.criu.last(rpc::Criu_req_type::RESTORE);
    assert!(restore.tcp_established() && restore.file_locks() && restore.rst_sibling());
    assert_eq!(restore.cg_root[0].path(), "/youki/c2");
    assert!(f
        .runtime
        .calls()
        .contains(&format!("adopt c2 {RESTORED_PID}")));
    assert_eq!(f.status("c2", ""), ApiStatus::RUNNING);
    f.service.process_exit(RESTORED_PID, 0);
    assert_eq!(
        f.status("c2", ""),
        ApiStatus::STOPPED,
        "a restored init exits like any other"
    );
}

/// Pages are compressed where containerd will copy them (its own
/// directory, `path`), and written raw into a client's image path, which
/// is read where it lies.
#[test]
fn pages_are_compressed_for_containerds_copy_only() {
    use lazarus_core::checkpoint::image::Metadata;
    let f = fixture_with(
        FakeCriu {
            page_image: Some(1 << 20),
            ..Default::default()
        },
        "default",
    );
    f.run("c1");
    let dirs = tempfile::tempdir().unwrap();
    let (copied, direct) = (dirs.path().join("copied"), dirs.path().join("direct"));
    std::fs::create_dir(&direct).unwrap();
    let leave_running = |image_path: &Path| {
        checkpoint_options(CheckpointOptions {
            exit: false,
            image_path: image_path.to_string_lossy().into_owned(),
            ..Default::default()
        })
    };
    for (path, options) in [
        (
            copied.to_string_lossy().into_owned(),
            leave_running(Path::new("")),
        ),
        (String::new(), leave_running(&direct)),
    ] {
        f.service
            .checkpoint(&CheckpointTaskRequest {
                id: "c1".into(),
                path,
                options,
                ..Default::default()
            })
            .unwrap();
    }
    let listed = |dir: &Path| Metadata::load(dir).unwrap().compressed_pages.len();
    assert_eq!(listed(&copied), 1);
    assert!(copied.join("pages-1.img.zst").is_file());
    assert!(!copied.join("pages-1.img").exists());
    assert_eq!(listed(&direct), 0);
    assert_eq!(
        std::fs::metadata(direct.join("pages-1.img")).unwrap().len(),
        1 << 20
    );
    assert!(!direct.join("pages-1.img.zst").exists());
}

/// containerd unpacks a checkpoint image into `ctrd-checkpoint*` in its
/// temporary directory for every restore and never removes it.
#[test]
fn an_incremental_request_in_the_images_dumps_with_memory_tracking_and_its_parent() {
    use lazarus_core::checkpoint::incremental::{Incremental, REQUEST_FILE};
    let f = fixture();
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = images.path().join("cp");
    std::fs::create_dir(&dir).unwrap();
    Incremental {
        parent: Some(parent.path().to_path_buf()),
    }
    .write(&dir)
    .unwrap();
    let opts = CheckpointOptions {
        exit: false,
        image_path: dir.to_string_lossy().into_owned(),
        ..Default::default()
    };
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            options: checkpoint_options(opts.clone()),
            ..Default::default()
        })
        .unwrap();
    let dump = f.criu.last(rpc::Criu_req_type::DUMP);
    assert!(dump.track_mem() && dump.leave_running());
    assert_eq!(dump.parent_img(), parent.path().to_str().unwrap());
    assert!(!dir.join(REQUEST_FILE).exists(), "taken out of the images");

    // Without a request: neither (every other checkpoint).
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            options: checkpoint_options(opts),
            ..Default::default()
        })
        .unwrap();
    let dump = f.criu.last(rpc::Criu_req_type::DUMP);
    assert!(!dump.track_mem() && !dump.has_parent_img());
}

#[test]
fn containerds_copy_of_the_checkpoint_is_removed_after_the_restore() {
    let f = fixture();
    f.run("c1");
    let copy = std::env::temp_dir().join(format!("ctrd-checkpoint-unit{}", std::process::id()));
    let path = copy.to_string_lossy().into_owned();
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            path: path.clone(),
            ..Default::default()
        })
        .unwrap();
    assert!(copy.join("lazarus.json").is_file());
    f.service
        .create(&CreateTaskRequest {
            id: "c2".into(),
            bundle: f.bundle.path().to_string_lossy().into_owned(),
            checkpoint: path,
            ..Default::default()
        })
        .unwrap();
    f.service
        .start(&StartRequest {
            id: "c2".into(),
            ..Default::default()
        })
        .unwrap();
    let left = copy.exists();
    let _ = std::fs::remove_dir_all(&copy);
    assert!(!left, "{} is left after the restore", copy.display());
}

#[test]
fn a_hook_configured_network_is_dumped_empty_and_set_up_again_at_restore() {
    use oci_spec::runtime::{HookBuilder, HooksBuilder};
    let f = fixture();
    let mut spec = Spec::default();
    let hook = HookBuilder::default().path("/bin/true").build().unwrap();
    let hooks = HooksBuilder::default()
        .prestart(vec![hook])
        .build()
        .unwrap();
    spec.set_hooks(Some(hooks));
    let annotation = "io.lazarus.checkpoint.tcp-established";
    spec.set_annotations(Some(HashMap::from([(annotation.into(), "true".into())])));
    spec.save(f.bundle.path().join("config.json")).unwrap();
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            path: images.path().to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    let dump = f.criu.last(rpc::Criu_req_type::DUMP);
    assert_eq!(dump.empty_ns(), libc::CLONE_NEWNET as u32);
    assert!(dump.tcp_established(), "from the annotation");

    f.service
        .create(&CreateTaskRequest {
            id: "c2".into(),
            bundle: f.bundle.path().to_string_lossy().into_owned(),
            checkpoint: images.path().to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    f.service
        .start(&StartRequest {
            id: "c2".into(),
            ..Default::default()
        })
        .unwrap();
    let restore = f.criu.last(rpc::Criu_req_type::RESTORE);
    assert_eq!(restore.empty_ns(), libc::CLONE_NEWNET as u32);
    assert!(restore.tcp_established(), "re-applied from the image");
    let calls = f.runtime.calls();
    let network = calls
        .iter()
        .position(|c| c == &format!("restore_network c2 {RESTORED_PID}"));
    let adopt = calls
        .iter()
        .position(|c| c == &format!("adopt c2 {RESTORED_PID}"));
    assert!(network.is_some() && network < adopt, "{calls:?}");
}

#[test]
fn a_failed_dump_leaves_the_task_running_and_no_complete_image() {
    let f = fixture_with(
        FakeCriu {
            fail_dump: true,
            ..Default::default()
        },
        "moby",
    );
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let req = CheckpointTaskRequest {
        id: "c1".into(),
        path: images.path().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let err = f.service.checkpoint(&req).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot dump: test") && text.contains("dump.log"),
        "{text}"
    );
    assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);
    assert!(!images.path().join("lazarus.json").exists());
    assert!(
        !f.criu.last(rpc::Criu_req_type::DUMP).leave_running(),
        "moby without options: exit"
    );
}

#[test]
fn restore_refuses_an_incomplete_image_at_create() {
    let f = fixture();
    let empty = tempfile::tempdir().unwrap();
    let req = CreateTaskRequest {
        id: "c1".into(),
        bundle: f.bundle.path().to_string_lossy().into_owned(),
        checkpoint: empty.path().to_string_lossy().into_owned(),
        ..Default::default()
    };
    assert_eq!(code(f.service.create(&req)), ttrpc::Code::INVALID_ARGUMENT);
    assert!(f.criu.requests.lock().unwrap().is_empty());
}

fn exec_request(id: &str, exec_id: &str) -> ExecProcessRequest {
    let spec = serde_json::to_vec(&oci_spec::runtime::Process::default()).unwrap();
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: MessageField::some(Any {
            value: spec,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds and starts exec `exec_id` in container `id`; its pid (the events
/// so far are read off).
fn start_exec(f: &Fixture, id: &str, exec_id: &str) -> i32 {
    f.service.exec(&exec_request(id, exec_id)).unwrap();
    let start = StartRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        ..Default::default()
    };
    let pid = f.service.start(&start).unwrap().pid as i32;
    f.topics();
    pid
}

fn exit_ids(events: &[TaskEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.message.downcast_ref::<TaskExit>())
        .map(|e| e.id.clone())
        .collect()
}

/// While CRIU dumps (the fake holds the dump), every call that must not wait
/// for it answers at once, the ones that must not run with it are refused,
/// and exits are handled: an exec's at once, the init's held until the
/// dump ends, then reported after TaskCheckpointed.
#[test]
fn a_checkpoint_under_way_blocks_no_state_kill_or_exit() {
    let (gate, at, go) = Gate::new();
    let criu = FakeCriu {
        dump_gate: Some(gate),
        ..Default::default()
    };
    let f = fixture_with(criu, "default");
    f.run("c1");
    let init = f.service.get("c1").unwrap().lock().init.pid;
    let exec_pid = start_exec(&f, "c1", "e1");
    let images = tempfile::tempdir().unwrap();
    let req = CheckpointTaskRequest {
        id: "c1".into(),
        path: images.path().to_string_lossy().into_owned(),
        options: checkpoint_options(CheckpointOptions::default()),
        ..Default::default()
    };
    let id = |exec_id: &str| (String::from("c1"), String::from(exec_id));
    std::thread::scope(|s| {
        let dump = s.spawn(|| f.service.checkpoint(&req));
        at.recv_timeout(Duration::from_secs(10))
            .expect("the dump never started");
        let t = std::time::Instant::now();
        assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);
        let pids = f.service.pids(&PidsRequest {
            id: "c1".into(),
            ..Default::default()
        });
        assert_eq!(pids.unwrap().processes.len(), 2);
        let connect = f.service.connect(&ConnectRequest {
            id: "c1".into(),
            ..Default::default()
        });
        assert_eq!(connect.unwrap().task_pid, init as u32);
        let (c1, _) = id("");
        let delete = DeleteRequest {
            id: c1.clone(),
            ..Default::default()
        };
        let refused = ttrpc::Code::FAILED_PRECONDITION;
        assert_eq!(code(f.service.delete(&delete)), refused);
        let pause = PauseRequest {
            id: c1.clone(),
            ..Default::default()
        };
        assert_eq!(code(f.service.pause(&pause)), refused);
        assert_eq!(code(f.service.checkpoint(&req)), refused);
        assert_eq!(code(f.service.exec(&exec_request("c1", "e2"))), refused);
        // An exec's exit is reported at once.
        f.service.process_exit(exec_pid, 5);
        assert_eq!(f.status("c1", "e1"), ApiStatus::STOPPED);
        assert_eq!(exit_ids(&f.events.try_iter().collect::<Vec<_>>()), ["e1"]);
        // Kill reaches the init; its exit is held until the dump ends.
        let kill = KillRequest {
            id: c1.clone(),
            signal: 9,
            ..Default::default()
        };
        f.service.kill(&kill).unwrap();
        f.service.process_exit(init, 137);
        assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);
        assert!(f.events.try_iter().next().is_none(), "no TaskExit yet");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "calls took {took:?}");
        go.send(()).unwrap();
        dump.join().unwrap().unwrap();
    });
    let events: Vec<TaskEvent> = f.events.try_iter().collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["/tasks/checkpointed", "/tasks/exit"]);
    assert_eq!(exit_ids(&events), ["c1"]);
    assert_eq!(f.status("c1", ""), ApiStatus::STOPPED);
    assert!(f.runtime.calls().contains(&"kill c1 9 false".to_string()));
    let delete = DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(f.service.delete(&delete).unwrap().exit_status, 137);
}

/// An exec that dies while the runtime helper that started it is still
/// returning: its exit comes before its pid is known, and is reported once
/// it is, after TaskExecStarted.
#[test]
fn an_exit_before_the_pid_is_registered_is_reported_after_the_start() {
    let (gate, at, go) = Gate::new();
    let runtime = FakeRuntime {
        exec_gate: Some(gate),
        ..Default::default()
    };
    let f = fixture_of(runtime, FakeCriu::default(), "default");
    f.run("c1");
    f.service.exec(&exec_request("c1", "e1")).unwrap();
    let start = StartRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let pid = std::thread::scope(|s| {
        let started = s.spawn(|| f.service.start(&start));
        let pid = at.recv_timeout(Duration::from_secs(10)).unwrap();
        f.service.process_exit(pid, 7);
        go.send(()).unwrap();
        started.join().unwrap().unwrap().pid as i32
    });
    assert_eq!(f.status("c1", "e1"), ApiStatus::STOPPED);
    let wait = f.service.wait(&WaitRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    });
    assert_eq!(wait.unwrap().exit_status, 7);
    let events: Vec<TaskEvent> = f.events.try_iter().collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    assert!(
        topics.ends_with(&["/tasks/exec-started", "/tasks/exit"]),
        "{topics:?}"
    );
    assert!(
        !f.service.pids.is_registered(pid),
        "a dead pid stays unknown"
    );
}

#[cfg(test)]
#[path = "ids_prop_tests.rs"]
mod ids_prop_tests;

#[test]
fn restore_refuses_an_image_without_its_inventory_at_create_naming_it() {
    let f = fixture();
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let dir = images.path().join("cp");
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            path: dir.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    std::fs::remove_file(dir.join("inventory.img")).unwrap();
    let err = f
        .service
        .create(&CreateTaskRequest {
            id: "c2".into(),
            bundle: f.bundle.path().to_string_lossy().into_owned(),
            checkpoint: dir.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.code(), ttrpc::Code::INVALID_ARGUMENT);
    assert!(err.to_string().contains("inventory.img"), "{err}");
    assert_eq!(
        f.criu.requests.lock().unwrap().last().unwrap().type_(),
        rpc::Criu_req_type::DUMP,
        "no CRIU restore was tried"
    );
}

/// A migration's page server request (on loopback, where the tunnel
/// meets CRIU).
fn page_server(port: u16, mode: PageMode) -> PageServer {
    PageServer::local(port, mode)
}

/// A post-copy checkpoint (a page server request in its image path)
/// answers once CRIU is ready to serve pages, with the image directory
/// complete; the dump goes on with the task Checkpointing; a call-off ends
/// it, the task running, and the shim says how it ended.
#[test]
fn postcopy_checkpoint_answers_when_ready_and_a_call_off_leaves_it_running() {
    use lazarus_core::checkpoint::{control, postcopy};
    let f = fixture();
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let server = page_server(27000, PageMode::Lazy);
    server.write(images.path()).unwrap();
    let req = CheckpointTaskRequest {
        id: "c1".into(),
        options: checkpoint_options(CheckpointOptions {
            exit: true,
            image_path: images.path().to_string_lossy().into_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = f
        .service
        .migration_images(&req)
        .expect("a post-copy request");
    assert_eq!(dir, images.path());
    let answered = f.service.checkpoint_migration(req.clone(), dir);
    if postcopy::check_pipe_max_size().is_err() {
        // A host without the set-up's sysctl: refused up front, with the fix.
        let e = answered.unwrap_err().to_string();
        assert!(e.contains("fs.pipe-max-size"), "{e}");
        return;
    }
    answered.unwrap();
    // Complete but for the memory, while CRIU goes on serving it.
    assert!(images
        .path()
        .join(lazarus_core::checkpoint::image::METADATA_FILE)
        .is_file());
    assert!(control::ended(images.path()).is_none());
    let finished = f.criu.requests.lock().unwrap().clone();
    assert!(
        finished
            .iter()
            .all(|r| r.type_() != rpc::Criu_req_type::DUMP),
        "the dump was still running"
    );
    assert_eq!(
        code(f.service.checkpoint(&req)),
        ttrpc::Code::FAILED_PRECONDITION,
        "one checkpoint at a time"
    );

    control::cancel(images.path()).unwrap();
    let how = poll_for(|| control::ended(images.path()));
    assert!(how.contains("runs on here"), "{how}");
    let dump = f.criu.last(rpc::Criu_req_type::DUMP);
    // No TLS (the page tunnel encrypts); the lazy page server listens on
    // loopback only, which over RPC only a configuration file can say.
    assert!(dump.lazy_pages() && !dump.tls(), "{dump:?}");
    assert_eq!(dump.ps.port(), 27000);
    assert!(
        dump.config_file().ends_with("lazarus-lazy.conf"),
        "{dump:?}"
    );
    assert_eq!(f.status("c1", ""), ApiStatus::RUNNING);
}

/// A stop-copy checkpoint (a push request in its image path) answers once
/// CRIU has sent every page and waits at post-dump, the image directory
/// complete; released, the dump ends well; called off, it fails and the
/// task runs on.
#[test]
fn push_checkpoint_answers_at_post_dump_and_waits_for_release_or_call_off() {
    use lazarus_core::checkpoint::control;
    let f = fixture();
    for (id, released) in [("c1", true), ("c2", false)] {
        f.run(id);
        let images = tempfile::tempdir().unwrap();
        let server = page_server(27001, PageMode::Push);
        server.write(images.path()).unwrap();
        let req = CheckpointTaskRequest {
            id: id.into(),
            options: checkpoint_options(CheckpointOptions {
                exit: true,
                image_path: images.path().to_string_lossy().into_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dir = f.service.migration_images(&req).expect("a push request");
        let dumps = |f: &Fixture| {
            f.criu
                .requests
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.type_() == rpc::Criu_req_type::DUMP)
                .count()
        };
        let before = dumps(&f);
        f.service.checkpoint_migration(req.clone(), dir).unwrap();
        assert!(images
            .path()
            .join(lazarus_core::checkpoint::image::METADATA_FILE)
            .is_file());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(control::ended(images.path()).is_none(), "{id}: not waiting");
        assert_eq!(dumps(&f), before, "{id}: the dump ended unreleased");
        match released {
            true => control::release(images.path()).unwrap(),
            false => control::cancel(images.path()).unwrap(),
        }
        let how = poll_for(|| control::ended(images.path()));
        let dump = f.criu.last(rpc::Criu_req_type::DUMP);
        assert!(!dump.lazy_pages() && !dump.tls(), "{dump:?}");
        assert_eq!((dump.ps.address(), dump.ps.port()), ("127.0.0.1", 27001));
        match released {
            true => assert!(how.contains("every page was sent"), "{how}"),
            false => {
                assert!(how.contains("runs on here"), "{how}");
                assert_eq!(f.status(id, ""), ApiStatus::RUNNING);
            }
        }
    }
}

/// What `probe` returns within 10 s.
fn poll_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Checkpoints a running `c1` (left running) and creates `c2` from it:
/// `c2` is CreatedFromCheckpoint, waiting for Start.
fn created_from_a_checkpoint(f: &Fixture) -> tempfile::TempDir {
    f.run("c1");
    let images = tempfile::tempdir().unwrap();
    let dir = images.path().join("cp");
    let opts = CheckpointOptions {
        exit: false,
        ..Default::default()
    };
    f.service
        .checkpoint(&CheckpointTaskRequest {
            id: "c1".into(),
            path: dir.to_string_lossy().into_owned(),
            options: checkpoint_options(opts),
            ..Default::default()
        })
        .unwrap();
    f.service
        .create(&CreateTaskRequest {
            id: "c2".into(),
            bundle: f.bundle.path().to_string_lossy().into_owned(),
            checkpoint: dir.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    images
}

fn start_c2(f: &Fixture) -> Result<StartResponse> {
    f.service.start(&StartRequest {
        id: "c2".into(),
        ..Default::default()
    })
}

fn delete_c2(f: &Fixture) -> Result<DeleteResponse> {
    f.service.delete(&DeleteRequest {
        id: "c2".into(),
        ..Default::default()
    })
}

/// Starts `c2` on a thread of its own (its restore may block or panic).
fn start_c2_in_background(f: &Fixture) -> std::thread::JoinHandle<Result<()>> {
    let service = f.service.clone();
    std::thread::spawn(move || {
        let start = StartRequest {
            id: "c2".into(),
            ..Default::default()
        };
        service.start(&start).map(drop)
    })
}

/// The exit Wait would return for `c2` now (None: Wait would block).
fn waited_exit(f: &Fixture) -> Option<u32> {
    let cell = f.service.get("c2").unwrap();
    let exit = cell.lock().init.exit.get();
    exit.map(|e| e.code)
}

#[test]
fn a_failed_adopt_after_a_restore_stops_the_task_with_its_exit_reported() {
    let runtime = FakeRuntime {
        fail_adopt: true,
        ..Default::default()
    };
    let f = fixture_of(runtime, FakeCriu::default(), "default");
    let _images = created_from_a_checkpoint(&f);
    f.topics();
    assert!(start_c2(&f).is_err());
    assert_eq!(f.status("c2", ""), ApiStatus::STOPPED);
    assert_eq!(waited_exit(&f), Some(137), "Wait returns");
    assert!(f.topics().contains(&"/tasks/exit".to_string()));
    assert_eq!(delete_c2(&f).unwrap().exit_status, 137, "Delete reports it");
}

#[test]
fn kill_during_a_restore_calls_criu_off_and_the_task_ends_killed() {
    let (entered, at) = channel();
    let criu = FakeCriu {
        restore_until_called_off: Some(entered),
        ..Default::default()
    };
    let f = fixture_with(criu, "default");
    let _images = created_from_a_checkpoint(&f);
    let starter = start_c2_in_background(&f);
    at.recv_timeout(Duration::from_secs(10))
        .expect("the restore runs");
    f.service
        .kill(&KillRequest {
            id: "c2".into(),
            signal: libc::SIGKILL as u32,
            ..Default::default()
        })
        .expect("Kill is allowed during a restore");
    let started = starter.join().unwrap();
    assert!(started.is_err(), "the restore was called off");
    assert_eq!(f.status("c2", ""), ApiStatus::STOPPED);
    assert_eq!(waited_exit(&f), Some(137));
    assert!(delete_c2(&f).is_ok(), "and it can be deleted");
}

#[test]
fn a_restore_that_panics_does_not_leave_the_task_restoring() {
    let criu = FakeCriu {
        panic_in_restore: true,
        ..Default::default()
    };
    let f = fixture_with(criu, "default");
    let _images = created_from_a_checkpoint(&f);
    let starter = start_c2_in_background(&f);
    assert!(starter.join().is_err(), "the restore panicked");
    assert_eq!(f.status("c2", ""), ApiStatus::STOPPED);
    assert_eq!(waited_exit(&f), Some(137), "Wait returns");
    assert!(delete_c2(&f).is_ok(), "Delete is not refused for good");
}

/// CRI waits on an exec before starting it; when the start fails, that
/// Wait must return (else its connection holds the shim's shutdown for
/// ever, as critest found), and the exec can be deleted.
#[test]
fn a_wait_on_an_exec_that_failed_to_start_returns() {
    let runtime = FakeRuntime {
        fail_exec: true,
        ..Default::default()
    };
    let f = fixture_of(runtime, FakeCriu::default(), "default");
    f.run("c1");
    let spec = serde_json::to_vec(&oci_spec::runtime::Process::default()).unwrap();
    f.service
        .exec(&ExecProcessRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            spec: MessageField::some(Any {
                value: spec,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
    let cell = f.service.get("c1").unwrap();
    let exit = cell.lock().exec("e1").unwrap().process.exit.clone();
    let waiter = std::thread::spawn(move || exit.wait().code);
    let start = StartRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert!(f.service.start(&start).is_err());
    assert_eq!(waiter.join().unwrap(), 255, "Wait returned");
    assert_eq!(f.status("c1", "e1"), ApiStatus::STOPPED);
    let delete = DeleteRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert!(f.service.delete(&delete).is_ok());
}

/// The init's exit is published last, after the exits of the execs it
/// took down (each finished on its own thread, as the exit watcher runs
/// them), as runc's shim does; and exits of different processes are
/// finished concurrently.
#[test]
fn the_inits_exit_waits_for_its_execs_exits() {
    let f = fixture();
    f.run("c1");
    let init = f.service.get("c1").unwrap().lock().init.pid;
    let exec_pid = start_exec(&f, "c1", "e1");
    // The init's exit is collected first; the exec's comes after it.
    let init_exit = f.service.claim_exit(init, 137).unwrap();
    let exec_exit = f.service.claim_exit(exec_pid, 137).unwrap();
    std::thread::scope(|s| {
        let init_done = s.spawn(|| f.service.finish_exit(init_exit));
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            f.events.try_iter().next().is_none(),
            "the init's exit was published while its exec still ran"
        );
        f.service.finish_exit(exec_exit);
        init_done.join().unwrap();
    });
    let events: Vec<TaskEvent> = f.events.try_iter().collect();
    assert_eq!(exit_ids(&events), ["e1", "c1"]);
    assert_eq!(f.status("c1", ""), ApiStatus::STOPPED);
}
