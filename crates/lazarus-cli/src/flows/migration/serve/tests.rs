//! The receiver's refusals (before anything is frozen at the sender) and
//! its confirmation rule (an unconfirmed copy is removed: never two
//! running), on a fake engine, a fake restore and a scripted sender.

use std::cell::RefCell;

use super::checks::{check_engine, check_offer};
use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::ImageFound;
use crate::flows::migration::test_peer::{pair, script};
use crate::flows::migration::PROTOCOL;

fn offer(engine: &str) -> Offer {
    Offer {
        protocol: PROTOCOL,
        engine: engine.into(),
        name: "web".into(),
        namespace: "default".into(),
        image: "nginx:1".into(),
        image_digest: "sha256:aa".into(),
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn another_protocol_is_refused() {
    let o = Offer {
        protocol: PROTOCOL + 1,
        ..offer("docker")
    };
    let e = check_offer(&o).unwrap_err().to_string();
    assert!(e.contains("run the same Lazarus version on both"), "{e}");
}

#[test]
fn a_name_unsafe_to_pass_on_is_refused() {
    for name in ["", "../etc", "a b", "-rf"] {
        let o = Offer {
            name: name.into(),
            ..offer("docker")
        };
        assert!(check_offer(&o).is_err(), "{name:?}");
    }
    check_offer(&offer("docker")).unwrap();
}

#[test]
fn a_name_taken_here_is_a_conflict_and_the_image_is_not_asked() {
    for (kind, says) in [
        (
            "docker",
            "a container named web already exists on the receiving host",
        ),
        (
            "containerd",
            "a container web already exists in namespace default",
        ),
    ] {
        let mut engine = FakeEngine::new(kind);
        engine.containers.push("web".into());
        let e = block_on(check_engine(&offer(kind), &engine)).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert_eq!(engine.calls(), "exists web");
    }
}

#[test]
fn a_missing_image_is_not_found_in_the_engines_words() {
    for (kind, says) in [
        ("docker", "docker pull nginx:1"),
        ("containerd", "ctr -n default images pull/import"),
    ] {
        let mut engine = FakeEngine::new(kind);
        engine.image = ImageFound::Missing;
        let e = block_on(check_engine(&offer(kind), &engine)).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert_eq!(engine.calls(), "exists web, find_image nginx:1");
    }
}

#[test]
fn another_image_of_the_same_name_is_refused() {
    for (kind, says) in [
        (
            "docker",
            "on this host is sha256:bb, but the checkpoint was taken on sha256:aa",
        ),
        (
            "containerd",
            "on the receiving host is sha256:bb, the container's is sha256:aa",
        ),
    ] {
        let mut engine = FakeEngine::new(kind);
        engine.image = ImageFound::Different {
            found: "sha256:bb".into(),
        };
        let e = block_on(check_engine(&offer(kind), &engine)).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn a_free_name_and_the_same_image_are_accepted() {
    let engine = FakeEngine::new("containerd");
    block_on(check_engine(&offer("containerd"), &engine)).unwrap();
}

#[test]
fn an_engine_error_is_the_checks_error() {
    let engine = FakeEngine::new("docker").failing(&["exists"]);
    let e = block_on(check_engine(&offer("docker"), &engine)).unwrap_err();
    assert_eq!(e.to_string(), "exists failed");
}

/// A restore that succeeds unless told not to; what it was asked is logged.
#[derive(Default)]
struct FakeRestore {
    fail: bool,
    log: RefCell<Vec<String>>,
}

impl Restorer for FakeRestore {
    async fn restore(&self, args: &ImportArgs) -> Result<ImportReport> {
        self.log.borrow_mut().push(format!(
            "restore {} {:?}",
            args.name.as_deref().unwrap_or(""),
            args.namespace
        ));
        if self.fail {
            return Err(Error::Conflict("the name was taken meanwhile".into()));
        }
        Ok(ImportReport {
            name: "web".into(),
            start_seconds: None,
            id: "web".into(),
            engine: "containerd".into(),
            namespace: "default".into(),
            from: args.file.clone(),
            extract_seconds: 0.0,
            restore_seconds: 0.1,
            pages_bytes: None,
            volumes: Vec::new(),
            restore_path: String::new(),
            running: None,
        })
    }

    async fn remove(&self, restored: &ImportReport) -> Result<()> {
        self.log
            .borrow_mut()
            .push(format!("remove {}", restored.name));
        Ok(())
    }
}

/// Runs the receiver's restore and confirmation against a sender that
/// answers the restored container's report with `ack` (None: hangs up).
fn settle(restorer: &FakeRestore, ack: Option<Answer>) -> (Result<ImportReport>, Answer) {
    let (mut ours, theirs) = pair();
    let sender = script(theirs, move |ch| {
        let answer: Answer = ch.recv_json().unwrap();
        if answer.ok {
            if let Some(ack) = ack {
                ch.send_json(&ack).unwrap();
            }
        }
        answer
    });
    let dir = tempfile::tempdir().unwrap();
    let settled = block_on(restore_and_confirm(
        &mut ours,
        &offer("containerd"),
        dir.path().join("archive.tar"),
        dir.path(),
        None,
        None,
        restorer,
    ));
    drop(ours);
    (settled, sender.join().unwrap())
}

#[test]
fn a_confirmed_copy_stays() {
    let restorer = FakeRestore::default();
    let (settled, answer) = settle(&restorer, Some(Answer::ready()));
    assert_eq!(settled.unwrap().name, "web");
    assert!(answer.ok);
    assert_eq!(answer.restored.unwrap().name, "web");
    assert_eq!(
        restorer.log.borrow().join(", "),
        "restore web Some(\"default\")"
    );
}

#[test]
fn a_copy_the_sender_took_back_is_removed() {
    let restorer = FakeRestore::default();
    let refused = Answer::refused(&Error::Refused("changed my mind".into()));
    let (settled, _) = settle(&restorer, Some(refused));
    let e = settled.unwrap_err().to_string();
    assert!(e.contains("the sender took its container back"), "{e}");
    assert!(e.contains("removed here, the source keeps it"), "{e}");
    assert_eq!(
        restorer.log.borrow().join(", "),
        "restore web Some(\"default\"), remove web"
    );
}

#[test]
fn a_copy_never_confirmed_is_removed() {
    let restorer = FakeRestore::default();
    let (settled, _) = settle(&restorer, None);
    let e = settled.unwrap_err().to_string();
    assert!(e.contains("the sender never confirmed"), "{e}");
    assert!(restorer.log.borrow().join(", ").ends_with("remove web"));
}

#[test]
fn a_failed_restore_is_told_to_the_sender_as_what_it_was() {
    let restorer = FakeRestore {
        fail: true,
        ..Default::default()
    };
    let (settled, answer) = settle(&restorer, None);
    assert!(matches!(settled.unwrap_err(), Error::Conflict(_)));
    assert!(!answer.ok);
    // The sender's error is a conflict too.
    assert!(matches!(answer.refusal("x".into()), Error::Conflict(_)));
    assert_eq!(restorer.log.borrow().len(), 1, "nothing to remove");
}
