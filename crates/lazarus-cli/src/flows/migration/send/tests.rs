//! The sender's exchanges before anything is frozen, and its hand-over,
//! against a scripted receiver: a refusal says the container was not
//! touched, with the kind of error the receiver had.

use super::*;
use crate::error::exit;
use crate::flows::migration::test_peer::{pair, script};
use crate::flows::migration::MAX_ARCHIVE;

fn args(mode: Mode) -> MigrateArgs {
    MigrateArgs {
        container: "web".into(),
        to: "b:7470".into(),
        key: None,
        name: None,
        namespace: None,
        to_namespace: None,
        rm: false,
        tcp_established: false,
        ignore_volumes: false,
        mode,
        compress: Compress::Zstd,
        json: true,
    }
}

fn web() -> Target {
    Target {
        id: "id-web".into(),
        name: "web".into(),
        namespace: "default".into(),
        docker: None,
    }
}

fn image() -> (String, String) {
    ("nginx:1".into(), "sha256:aa".into())
}

#[test]
fn the_offer_names_the_container_as_it_is_to_be_there() {
    let (mut ours, theirs) = pair();
    let receiver = script(theirs, |ch| {
        let offer: Offer = ch.recv_json().unwrap();
        ch.send_json(&Answer {
            postcopy: true,
            ..Answer::ready()
        })
        .unwrap();
        offer
    });
    let a = MigrateArgs {
        name: Some("web2".into()),
        to_namespace: Some("prod".into()),
        ..args(Mode::Auto)
    };
    assert!(offer(&mut ours, &a, &web(), image()).unwrap());
    let offer = receiver.join().unwrap();
    assert_eq!(offer.protocol, PROTOCOL);
    assert_eq!(
        (offer.engine.as_str(), offer.name.as_str()),
        ("containerd", "web2")
    );
    assert_eq!(offer.namespace, "prod");
    assert_eq!((offer.image, offer.image_digest), image());
}

#[test]
fn a_refused_offer_leaves_the_container_untouched_with_the_receivers_kind() {
    for (refusal, conflict) in [
        (Error::Conflict("web exists".into()), true),
        (Error::Refused("no".into()), false),
    ] {
        let (mut ours, theirs) = pair();
        let answer = Answer::refused(&refusal);
        let receiver = script(theirs, move |ch| {
            let _: Offer = ch.recv_json().unwrap();
            ch.send_json(&answer).unwrap();
        });
        let e = offer(&mut ours, &args(Mode::Auto), &web(), image()).unwrap_err();
        receiver.join().unwrap();
        assert_eq!(matches!(e, Error::Conflict(_)), conflict, "{e}");
        assert_eq!(e.exit_code() == exit::CONFLICT, conflict);
        assert!(e.to_string().ends_with("web was not touched"), "{e}");
    }
}

#[test]
fn the_mode_is_as_asked_and_as_both_hosts_can() {
    assert!(!choose_mode(&args(Mode::Stopcopy), true, "web").unwrap());
    assert!(!choose_mode(&args(Mode::Auto), false, "web").unwrap());
    let e = choose_mode(&args(Mode::Postcopy), false, "web").unwrap_err();
    assert!(
        e.to_string()
            .contains("--mode stopcopy; web was not touched"),
        "{e}"
    );
}

#[test]
fn a_plan_the_receiver_could_not_prepare_is_refused() {
    let (mut ours, theirs) = pair();
    let receiver = script(theirs, |ch| {
        let plan: Plan = ch.recv_json().unwrap();
        ch.send_json(&Answer::refused(&Error::Refused("disk full".into())))
            .unwrap();
        plan.postcopy
    });
    let key = Key::generate().unwrap();
    let e = plan(&mut ours, &args(Mode::Auto), true, "web", &key)
        .err()
        .unwrap()
        .to_string();
    assert!(receiver.join().unwrap(), "the plan said post-copy");
    assert!(
        e.contains("could not prepare the migration: disk full"),
        "{e}"
    );
    assert!(e.ends_with("web was not touched"), "{e}");
}

#[test]
fn a_receiver_with_no_page_tunnel_is_refused() {
    let (mut ours, theirs) = pair();
    let receiver = script(theirs, |ch| {
        let _: Plan = ch.recv_json().unwrap();
        ch.send_json(&Answer::ready()).unwrap();
    });
    let key = Key::generate().unwrap();
    let e = plan(&mut ours, &args(Mode::Auto), false, "web", &key)
        .err()
        .unwrap()
        .to_string();
    receiver.join().unwrap();
    assert!(e.contains("opened no page tunnel"), "{e}");
}

#[test]
fn the_archive_is_handed_over_whole_and_the_restore_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.tar");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let (mut ours, theirs) = pair();
    let receiver = script(theirs, |ch| {
        let mut got = Vec::new();
        ch.recv_into(&mut got, MAX_ARCHIVE, &mut |_| {}).unwrap();
        ch.send_json(&Answer::refused(&Error::NotFound("image gone".into())))
            .unwrap();
        got
    });
    let e = hand_over(&mut ours, &file, false).unwrap_err();
    assert_eq!(receiver.join().unwrap(), vec![7u8; 300_000]);
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    assert!(
        e.to_string().contains("could not restore it: image gone"),
        "{e}"
    );
}
