//! `containerd-shim-lazarus-v2`: the shim, or (as `... helper <request>`)
//! the single-threaded helper that drives libcontainer.

fn main() {
    let mut args = std::env::args();
    let first = args.nth(1);
    if matches!(first.as_deref(), Some("-v" | "-version" | "--version")) {
        println!(
            "containerd-shim-lazarus-v2 version {}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    if first.as_deref() == Some("-info") {
        // containerd's runtime introspection (see lazarus_shim::info).
        std::process::exit(lazarus_shim::info::main(lazarus_shim::shim::RUNTIME_ID));
    }
    if first.as_deref() == Some("helper") {
        // Must stay the first thing main does: no thread may exist yet.
        let request = args.next().unwrap_or_default();
        std::process::exit(lazarus_shim::runtime::helper::main(&request));
    }
    // glibc gives a thread that meets contention an arena of its own, with
    // its own touched pages; a shim's score of mostly idle threads needs no
    // more than two. Measured: private memory per shim 1464 -> 1408 KiB.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let log_level = lazarus_shim::config::Config::load()
        .map(|c| c.log_level)
        .unwrap_or_else(|_| "info".into());
    let config = containerd_shim::Config {
        default_log_level: log_level,
        // The serving shim opens containerd's log FIFO itself, never
        // blocking (see lazarus_shim::shim::init_logger).
        no_setup_logger: true,
        ..Default::default()
    };
    containerd_shim::run::<lazarus_shim::shim::LazarusShim>(
        lazarus_shim::shim::RUNTIME_ID,
        Some(config),
    );
}
