//! containerd's Task ttrpc service: thin handlers over [`TaskService`].

use std::sync::Arc;

use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use containerd_shim_protos::api::*;

use crate::service::TaskService;

pub struct TaskRpc(pub Arc<TaskService>);

fn reply<T>(method: &str, id: &str, result: crate::error::Result<T>) -> TtrpcResult<T> {
    result.map_err(|e| {
        log::warn!("{method} {id}: {e}");
        e.into()
    })
}

fn empty(_: ()) -> Empty {
    Empty::new()
}

impl Task for TaskRpc {
    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        log::info!(
            "create {} bundle={} terminal={}",
            req.id,
            req.bundle,
            req.terminal
        );
        reply("create", &req.id, self.0.create(&req))
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        reply("start", &req.id, self.0.start(&req))
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        reply("state", &req.id, self.0.state(&req))
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        reply("kill", &req.id, self.0.kill(&req).map(empty))
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        reply("delete", &req.id, self.0.delete(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        reply("wait", &req.id, self.0.wait(&req))
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        reply("pids", &req.id, self.0.pids(&req))
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        reply("exec", &req.id, self.0.exec(&req).map(empty))
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        reply("resize_pty", &req.id, self.0.resize_pty(&req).map(empty))
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        reply("close_io", &req.id, self.0.close_io(&req).map(empty))
    }

    fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        reply("pause", &req.id, self.0.pause(&req).map(empty))
    }

    fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        reply("resume", &req.id, self.0.resume(&req).map(empty))
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        reply("update", &req.id, self.0.update(&req).map(empty))
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        reply("stats", &req.id, self.0.stats(&req))
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        reply("connect", &req.id, self.0.connect(&req))
    }

    fn shutdown(&self, _: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.0.shutdown();
        Ok(Empty::new())
    }

    fn checkpoint(&self, ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        // ttrpc drops the connection's cancel sender when the client's
        // connection breaks (containerd killed or restarted mid-dump).
        let client_gone = || {
            matches!(
                ctx.cancel_rx.try_recv(),
                Err(crossbeam::channel::TryRecvError::Disconnected)
            )
        };
        if let Some(images) = self.0.migration_images(&req) {
            let id = req.id.clone();
            return reply(
                "checkpoint",
                &id,
                self.0.checkpoint_migration(req, images).map(empty),
            );
        }
        let result = self.0.checkpoint_for(&req, &client_gone, None);
        reply("checkpoint", &req.id, result.map(empty))
    }
}
