//! The real-application images (`scripts/build-app-images.sh`): built once
//! per test process, only when an application test asks, and loaded into a
//! test's private dockerd on demand.

use crate::support::cmd::run_timeout;
use crate::support::harness::{Daemons, Setup};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub const REDIS_IMAGE: &str = "lazarus-test/redis:latest";
pub const WARM_IMAGE: &str = "lazarus-test/warm:latest";

#[derive(Clone, Copy)]
pub enum App {
    Redis,
    Warm,
}

impl App {
    fn file(self) -> &'static str {
        match self {
            App::Redis => "redis-docker.tar",
            App::Warm => "warm-docker.tar",
        }
    }

    pub fn image(self) -> &'static str {
        match self {
            App::Redis => REDIS_IMAGE,
            App::Warm => WARM_IMAGE,
        }
    }
}

/// Builds (or confirms up to date) the application image tars, once per
/// process; returns the directory holding them.
pub fn image_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        crate::support::config::build_images("build-app-images.sh", Duration::from_secs(600))
    })
}

/// `docker load`s `app`'s image into the daemon set's dockerd.
pub fn load(d: &Daemons, app: App) {
    let tar = image_dir().join(app.file());
    assert!(
        tar.is_file(),
        "prerequisite: {} missing after scripts/build-app-images.sh",
        tar.display()
    );
    let out = run_timeout(
        &mut d.docker_cmd(&["load", "-i", tar.to_str().unwrap()]),
        None,
        Duration::from_secs(180),
    )
    .ok();
    assert!(out.stdout.contains(app.image()), "image not loaded: {out}");
}

/// containerd and dockerd with the busybox test image and `apps` loaded.
pub fn with_docker_and(test: &str, apps: &[App]) -> Daemons {
    with_docker_and_with(test, &Setup::default(), apps)
}

/// [`with_docker_and`], the set made as `setup` says.
pub fn with_docker_and_with(test: &str, setup: &Setup, apps: &[App]) -> Daemons {
    // Build before starting daemons, so a first build does not eat into
    // anything timed against them.
    image_dir();
    let d = Daemons::with_docker_with(test, setup);
    for &app in apps {
        load(&d, app);
    }
    d
}
