//! Seam 3: where task events go.
//!
//! Handlers hand events to an [`EventSink`] and return at once. The
//! containerd sink forwards them, in order, from one thread: an RPC handler
//! never blocks on containerd (which may be calling us at that moment, or be
//! restarting), and a TaskExit can never overtake the TaskStart before it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::ttrpc::context::Context;

/// A task event ready to publish: its topic and its message.
pub struct TaskEvent {
    pub topic: String,
    pub message: Box<dyn containerd_shim_protos::protobuf::MessageDyn>,
}

impl TaskEvent {
    pub fn new<E: Event + 'static>(event: E) -> Self {
        TaskEvent {
            topic: event.topic(),
            message: Box::new(event),
        }
    }
}

impl std::fmt::Debug for TaskEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.topic, self.message)
    }
}

pub trait EventSink: Send + Sync {
    fn publish(&self, event: TaskEvent);
}

/// Publishes to containerd's event service at `TTRPC_ADDRESS`, reconnecting
/// when containerd has restarted.
pub struct ContainerdSink {
    tx: Mutex<Sender<TaskEvent>>,
}

const PUBLISH_ATTEMPTS: u32 = 10;

impl ContainerdSink {
    pub fn new(publisher: RemotePublisher, address: String, namespace: String) -> Self {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || forward(rx, publisher, &address, &namespace))
            .expect("spawn event forwarder");
        ContainerdSink { tx: Mutex::new(tx) }
    }
}

impl EventSink for ContainerdSink {
    fn publish(&self, event: TaskEvent) {
        if let Err(e) = self.tx.lock().unwrap().send(event) {
            log::error!("event forwarder is gone, dropping {:?}", e.0);
        }
    }
}

fn forward(rx: Receiver<TaskEvent>, publisher: RemotePublisher, address: &str, namespace: &str) {
    let mut publisher = Some(publisher);
    for event in rx {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=PUBLISH_ATTEMPTS {
            if publisher.is_none() {
                publisher = RemotePublisher::new(address)
                    .map_err(|e| log::warn!("reconnect to containerd at {address}: {e}"))
                    .ok();
            }
            if let Some(p) = &publisher {
                match p.publish(
                    Context::default(),
                    &event.topic,
                    namespace,
                    event.message.clone_box(),
                ) {
                    Ok(()) => break,
                    Err(e) => {
                        log::warn!("publish {} (attempt {attempt}): {e}", event.topic);
                        publisher = None;
                    }
                }
            }
            if attempt == PUBLISH_ATTEMPTS {
                log::error!("dropping event {event:?} after {PUBLISH_ATTEMPTS} attempts");
            } else {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Collects events on a channel; for tests.
pub struct ChannelSink(pub Mutex<Sender<TaskEvent>>);

impl ChannelSink {
    pub fn new() -> (Self, Receiver<TaskEvent>) {
        let (tx, rx) = channel();
        (ChannelSink(Mutex::new(tx)), rx)
    }
}

impl EventSink for ChannelSink {
    fn publish(&self, event: TaskEvent) {
        let _ = self.0.lock().unwrap().send(event);
    }
}
