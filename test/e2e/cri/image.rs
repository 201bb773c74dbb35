//! Checkpoint OCI images (issue 25): Kubernetes' checkpoint archive
//! (`CheckpointContainer`) made into an image by `lazarus checkpoint
//! --from-archive`, written as an OCI archive and pushed to the loopback
//! registry; pulled through CRI and used as a new pod's container image,
//! it restores the checkpoint (containerd 2.1's CRI restores a container
//! whose image carries the checkpoint annotation). Both runtimes: the
//! image route is containerd's, the restore the runtime's. containerd 1.7
//! has no CheckpointContainer: its refusal is asserted.

use crate::cri::checkpoint::{count, current_count, wait_count, COUNTER};
use crate::support::cmd::poll;
use crate::support::cri::CriHost;
use crate::support::lazarus::lazarus;
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Duration;

#[test]
fn cri_restores_a_checkpoint_image_pulled_from_a_registry() {
    let h = CriHost::start("cri_image");
    let pod = h.run_pod("image-a");
    let original = h.create(&pod, "counter", &h.image("busybox"), &["sh", "-c", COUNTER]);
    h.start_container(&original);
    let before = wait_count(&h, &original, 30);
    let archive = h.d.path("counter.tar");
    if !h.can_checkpoint() {
        let out = h.checkpoint(&original, &archive).err();
        assert!(out.all().contains("Unimplemented"), "{out}");
        return;
    }
    h.checkpoint(&original, &archive).ok();
    let archive_s = archive.to_str().unwrap();

    // As an OCI archive: an image layout whose manifest has the annotation.
    let file = h.d.path("counter-image.tar");
    let out = lazarus(
        &h.d,
        &[
            "checkpoint",
            "--from-archive",
            archive_s,
            "--export",
            &format!("oci-archive:{}", file.display()),
            "--json",
        ],
    )
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["container"], "counter", "{v:#}");
    let listed = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains("index.json") && listed.contains("oci-layout"),
        "{listed}"
    );
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}", file.display()),
        ])
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&inspect.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&inspect.stderr)));
    assert_eq!(
        manifest["annotations"]["org.criu.checkpoint.container.name"], "counter",
        "{manifest:#}"
    );
    assert_eq!(
        fs::metadata(&file)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );

    // Pushed, pulled through CRI, and a new pod's container image.
    let reference = h.image("counter-checkpoint");
    lazarus(
        &h.d,
        &[
            "checkpoint",
            "--from-archive",
            archive_s,
            "--push",
            &reference,
        ],
    )
    .ok();
    h.cri(&["pull", &reference]).ok();
    let pod2 = h.run_pod("image-b");
    let restored = h.create(&pod2, "counter", &reference, &[]);
    h.start_container(&restored);
    assert_eq!(h.state(&restored), "CONTAINER_RUNNING");
    assert_eq!(h.runtime_of(&restored), h.d.runtime());
    let first = current_count(&h, &restored);
    assert!(
        first >= before,
        "the restored counter is at {first}, below {before}: started afresh, not restored"
    );
    let next = poll(Duration::from_secs(10), || {
        count(&h, &restored).filter(|&n| n > first)
    });
    assert!(
        next.is_some(),
        "the restored counter does not count on from {first}"
    );
}
