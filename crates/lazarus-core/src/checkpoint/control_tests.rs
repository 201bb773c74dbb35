use std::os::unix::fs::PermissionsExt;

use super::*;

/// A request as the client writes it (its content is the page server's
/// business, not this protocol's).
fn request(images: &Path) {
    std::fs::write(request_path(images), b"{}").unwrap();
    write_lease(images).unwrap();
}

/// Ages the lease as a client dead for longer than the timeout leaves it.
fn age_lease(images: &Path) {
    let old = SystemTime::now() - LEASE_TIMEOUT - Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(images.join(LEASE_FILE))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn a_released_dump_ends() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path();
    assert_eq!(state(images), DumpState::NotRequested);
    request(images);
    assert_eq!(state(images), DumpState::Running);
    release(images).unwrap();
    assert_eq!(state(images), DumpState::Released);
    // Released wins over a call-off that came later.
    cancel(images).unwrap();
    assert_eq!(state(images), DumpState::Released);
    say_ended(images, "every page was sent");
    assert_eq!(
        state(images),
        DumpState::Ended("every page was sent".into())
    );
}

#[test]
fn a_cancelled_dump_is_called_off_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path();
    request(images);
    assert!(!cancelled(images));
    cancel(images).unwrap();
    assert!(cancelled(images) && called_off(images));
    assert_eq!(state(images), DumpState::CalledOff);
    say_ended(images, "resumed");
    assert_eq!(state(images), DumpState::Ended("resumed".into()));
}

#[test]
fn a_lapsed_lease_calls_the_dump_off() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path();
    request(images);
    assert!(!called_off(images));
    age_lease(images);
    assert!(lease_lapsed(images) && called_off(images));
    assert_eq!(state(images), DumpState::CalledOff);
    // Renewed in time, it holds again.
    write_lease(images).unwrap();
    assert_eq!(state(images), DumpState::Running);
}

#[test]
fn no_lease_is_not_a_lapsed_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(request_path(dir.path()), b"{}").unwrap();
    assert!(!lease_lapsed(dir.path()));
    assert_eq!(state(dir.path()), DumpState::Running);
}

#[test]
fn a_held_lease_is_renewed_privately() {
    let dir = tempfile::tempdir().unwrap();
    let lease = Lease::hold(dir.path());
    let path = dir.path().join(LEASE_FILE);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no lease file");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!lease_lapsed(dir.path()));
    drop(lease);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_push_dump_waits_for_release_or_call_off() {
    let dir = tempfile::tempdir().unwrap();
    let e = await_release(dir.path(), &|| true, RELEASE_TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("called off"), "{e}");
    // Neither word: not for ever.
    let e = await_release(dir.path(), &|| false, Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("neither released"), "{e}");
    release(dir.path()).unwrap();
    // Released wins over a call-off that came later.
    assert!(await_release(dir.path(), &|| true, RELEASE_TIMEOUT).is_ok());
    let later = tempfile::tempdir().unwrap();
    let path = later.path().to_path_buf();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        release(&path).unwrap();
    });
    assert!(await_release(later.path(), &|| false, RELEASE_TIMEOUT).is_ok());
    t.join().unwrap();
}

#[test]
fn every_control_file_and_nothing_else_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path();
    request(images);
    cancel(images).unwrap();
    release(images).unwrap();
    say_ended(images, "resumed");
    let mut written = 0;
    for entry in std::fs::read_dir(images).unwrap() {
        assert!(is_control_file(&entry.unwrap().path()));
        written += 1;
    }
    assert_eq!(written, 5, "request, lease, cancel, release, ended");
    assert!(!is_control_file(&images.join("pages-1.img")));
    assert!(!is_control_file(&images.join("lazarus.json")));
}

/// The client polls the end marker and acts on what it reads at once: a
/// marker caught created but not yet written is no end (a CI run once read
/// one as "ended, the pages not all sent" and called a good migration
/// failed), and the runtime's marker is never seen half written.
#[test]
fn an_end_is_read_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path();
    request(images);
    std::fs::write(images.join(ENDED_FILE), b"").unwrap();
    assert_eq!(ended(images), None);
    assert_eq!(state(images), DumpState::Running);
    say_ended(images, "every page was sent");
    assert_eq!(ended(images).as_deref(), Some("every page was sent"));
    let tmp = crate::files::tmp_of(&images.join(ENDED_FILE));
    assert!(!tmp.exists(), "the temp file was renamed into place");
    assert!(is_control_file(&tmp), "a killed runtime's temp file");
}
