//! The CLI itself killed (SIGKILL, or SIGINT as Ctrl-C sends it to the
//! terminal's process group) at several moments of `checkpoint --export`
//! and `restore --import`, on a 256 MiB memhog through Docker.
//!
//! An export killed at any moment leaves the container running as before
//! (thawed, its heap intact) with no archive, or the archive complete and
//! the container stopped; never stopped without a complete archive, and
//! never a partial archive beside the destination. An import killed at any
//! moment leaves no container, scratch directory or mount: its guard
//! removes them, and the same import then succeeds under the same name;
//! of a group archive, it removes every member made so far.

use crate::archive::export_import::cli_leftovers;
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::faults::kills::{memhog, start_memhog};
use crate::support::cmd::{poll, wait_until, Proc, COUNTER};
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::{dead_scratches_in_memory, lazarus, lazarus_cmd};
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

const HEAP_MIB: u64 = 256;
const SETTLE: Duration = Duration::from_secs(120);

/// When the signal lands.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after the command started.
    After(Duration),
    /// Export: the container frozen, CRIU dumping it. Import: CRIU
    /// restoring it.
    Criu,
    /// Export: the archive being written (the command holds an unnamed
    /// file in the destination's directory).
    Writing,
    /// Import: the Docker container exists (created, not yet running).
    Created,
}

fn signal(p: &Proc, sig: libc::c_int) {
    // As a terminal does: the command's process group (its guard is in a
    // session of its own).
    unsafe { libc::kill(-p.pid(), sig) };
}

/// Whether the command holds an unnamed file in `dir` (the archive on
/// its way: O_TMPFILE shows as `DIR/#INODE (deleted)`).
fn writing_into(pid: i32, dir: &Path) -> bool {
    let prefix = format!("{}/#", dir.display());
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|l| l.to_string_lossy().starts_with(&prefix))
}

/// Whether containerd reports Docker's container `id` paused (frozen by
/// Lazarus through containerd: Docker does not know).
pub fn paused_in_containerd(d: &Daemons, id: &str) -> bool {
    d.ctr_cmd_ns("moby", &["task", "ls"])
        .output()
        .ok()
        .is_some_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.contains(id) && l.contains("PAUSED"))
        })
}

/// Waits for `moment` while the command runs; false if it ended first.
fn reach(d: &Daemons, p: &mut Proc, moment: Moment, name: &str, dir: &Path, export: bool) -> bool {
    let id = || inspect(d, name, "{{.Id}}");
    let reached = poll(Duration::from_secs(120), || {
        if !p.running() {
            return Some(false);
        }
        let now = match moment {
            Moment::After(_) => true,
            Moment::Criu => !d.processes_named("criu").is_empty(),
            Moment::Writing => writing_into(p.pid(), dir),
            Moment::Created => d
                .docker(&["ps", "-a", "--format", "{{.Names}}"])
                .stdout
                .lines()
                .any(|n| n == name),
        };
        now.then_some(true)
    });
    if let Moment::After(t) = moment {
        sleep(t);
        return p.running();
    }
    let reached = reached.unwrap_or(false);
    if export && reached && matches!(moment, Moment::Criu) {
        // An export's dump runs on the frozen container.
        assert!(
            paused_in_containerd(d, &id()),
            "{name} is dumped without being frozen first"
        );
    }
    reached
}

fn name_is_running(d: &Daemons, name: &str) -> bool {
    d.docker(&["inspect", "-f", "{{.State.Running}}", name])
        .stdout
        .trim()
        == "true"
}

/// memhog `name` ticks on (2 more ticks), one unbroken run with its heap's
/// checksum `sum` throughout (a restored container's log starts where it
/// was restored, not at 0).
fn assert_memhog_goes_on(d: &Daemons, name: &str, sum: &str) {
    let now = memhog(d, name).len();
    let all = wait_until("memhog to tick on", Duration::from_secs(120), || {
        let all = memhog(d, name);
        (all.len() >= now + 2).then_some(all)
    });
    for w in all.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "memhog's ticks are not one run: {all:?}"
        );
    }
    assert!(
        all.iter().all(|(_, s)| s == sum),
        "memhog's heap changed: {all:?}"
    );
}

/// What is beside the archive in its directory.
fn beside(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_killed_export_never_loses_the_container() {
    let d = Daemons::with_docker("cli_killed_export");
    let name = d.name("hog");
    start_memhog(&d, &name, HEAP_MIB);
    let sum = memhog(&d, &name)[0].1.clone();
    let out_dir = d.path("archives");
    fs::create_dir_all(&out_dir).unwrap();
    let archive = out_dir.join("hog.tar.zst");
    let archive_arg = archive.to_str().unwrap().to_string();
    if !d.is_lazarus() {
        let out = lazarus(&d, &["checkpoint", &name, "--export", &archive_arg]).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        assert_memhog_goes_on(&d, &name, &sum);
        return;
    }
    let moments = [
        (Moment::After(Duration::from_millis(300)), libc::SIGKILL),
        (Moment::Criu, libc::SIGKILL),
        (Moment::Writing, libc::SIGKILL),
        (Moment::Criu, libc::SIGINT),
        (Moment::Writing, libc::SIGINT),
        (Moment::Writing, libc::SIGTERM),
    ];
    let mut reached = 0;
    for (moment, sig) in moments {
        let mut p =
            Proc::spawn(lazarus_cmd(&d).args(["checkpoint", &name, "--export", &archive_arg]));
        let hit = reach(&d, &mut p, moment, &name, &out_dir, true);
        if hit {
            signal(&p, sig);
            reached += 1;
        }
        let out = p.wait(Duration::from_secs(300));
        // Settled (no dump under way any more): running and thawed with no
        // archive, or stopped with it.
        let outcome = poll(SETTLE, || {
            if !d.processes_named("criu").is_empty() {
                return None;
            }
            let running = name_is_running(&d, &name);
            let frozen = paused_in_containerd(&d, &inspect(&d, &name, "{{.Id}}"));
            match (running && !frozen, archive.exists()) {
                (true, false) => Some("running on"),
                (false, true) => Some("stopped with its archive"),
                _ => None,
            }
        });
        let left = beside(&out_dir);
        eprintln!("{moment:?} signal {sig}: reached {hit}, {outcome:?}, beside: {left:?}");
        let outcome = outcome.unwrap_or_else(|| {
            panic!(
                "{moment:?}/{sig}: {name} neither runs on nor has a whole archive after {SETTLE:?} \
                 (running {}, archive {}): {out}",
                name_is_running(&d, &name),
                archive.exists()
            )
        });
        match outcome {
            "running on" => assert!(left.is_empty(), "partial archive left: {left:?}"),
            _ => {
                assert_eq!(left, ["hog.tar.zst"], "{left:?}");
                // Brought back from it, for the next moment.
                d.docker(&["rm", &name]).ok();
                lazarus(&d, &["restore", "--import", &archive_arg]).ok();
                fs::remove_file(&archive).unwrap();
            }
        }
        assert_memhog_goes_on(&d, &name, &sum);
    }
    assert!(
        reached >= 4,
        "only {reached} of the moments were reached before the export ended"
    );
    // The guards are done: no mount left under the work root.
    let mounts: Vec<String> = cli_leftovers(&d)
        .into_iter()
        .filter(|l| l.starts_with("mount"))
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
}

#[test]
fn a_killed_import_leaves_nothing_behind() {
    let d = Daemons::with_docker("cli_killed_import");
    let name = d.name("hog");
    start_memhog(&d, &name, HEAP_MIB);
    let sum = memhog(&d, &name)[0].1.clone();
    let archive = d.path("hog.tar.zst");
    let archive_arg = archive.to_str().unwrap().to_string();
    if !d.is_lazarus() {
        let out = lazarus(&d, &["checkpoint", &name, "--export", &archive_arg]).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        return;
    }
    lazarus(&d, &["checkpoint", &name, "--export", &archive_arg]).ok();
    d.docker(&["rm", &name]).ok();
    let moments = [
        (Moment::After(Duration::from_millis(200)), libc::SIGKILL),
        (Moment::Created, libc::SIGKILL),
        (Moment::Criu, libc::SIGKILL),
        (Moment::Created, libc::SIGINT),
        (Moment::Criu, libc::SIGTERM),
    ];
    let mut reached = 0;
    for (moment, sig) in moments {
        let mut p = Proc::spawn(lazarus_cmd(&d).args(["restore", "--import", &archive_arg]));
        let hit = reach(&d, &mut p, moment, &name, &d.path("."), false);
        if hit {
            signal(&p, sig);
            reached += 1;
        }
        let out = p.wait(Duration::from_secs(300));
        if !hit && out.code == Some(0) {
            // It finished first: an ordinary import; start over.
            eprintln!("{moment:?} signal {sig}: the import ended first");
            d.docker(&["rm", "-f", &name]).ok();
            continue;
        }
        // An import unpacks into memory when it fits: its scratch there
        // goes too.
        let gone = poll(SETTLE, || {
            let names = d.docker(&["ps", "-a", "--format", "{{.Names}}"]).stdout;
            let left = cli_leftovers(&d);
            let in_memory = dead_scratches_in_memory(&d, "import");
            (!names.lines().any(|n| n == name) && left.is_empty() && in_memory.is_empty())
                .then_some(())
        });
        eprintln!(
            "{moment:?} signal {sig}: reached {hit}, cleaned up {}",
            gone.is_some()
        );
        assert!(
            gone.is_some(),
            "{moment:?}/{sig}: left after {SETTLE:?}: container {:?}, {:?}, {:?}: {out}",
            d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
                .stdout,
            cli_leftovers(&d),
            dead_scratches_in_memory(&d, "import")
        );
    }
    assert!(
        reached >= 4,
        "only {reached} of the moments were reached before the import ended"
    );
    // The same import now works, under the same name.
    lazarus(&d, &["restore", "--import", &archive_arg]).ok();
    wait_until("the restored hog to tick", Duration::from_secs(60), || {
        (!memhog(&d, &name).is_empty()).then_some(())
    });
    assert_memhog_goes_on(&d, &name, &sum);
}

/// A counter and a 256 MiB memhog to checkpoint together into `archive`:
/// their names, the hog's heap checksum and the `checkpoint --group`
/// arguments; None under runc, after checking that the CLI refuses them.
fn group_of_two(d: &Daemons, archive: &Path) -> Option<(String, String, String, Vec<String>)> {
    let (counter, hog) = (d.name("counter"), d.name("hog"));
    run_sh_detached(d, &counter, COUNTER);
    start_memhog(d, &hog, HEAP_MIB);
    let sum = memhog(d, &hog)[0].1.clone();
    let export: Vec<String> = ["checkpoint", "--group", &counter, &hog, "--export"]
        .iter()
        .map(|s| s.to_string())
        .chain([archive.display().to_string()])
        .collect();
    if !d.is_lazarus() {
        let out = lazarus(d, &export.iter().map(String::as_str).collect::<Vec<_>>()).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        return None;
    }
    Some((counter, hog, sum, export))
}

/// A group archive's import killed midway (while its second member is
/// made, and while CRIU restores): the guard removes every member made so
/// far; the group then comes back whole.
#[test]
fn a_killed_group_import_leaves_no_member() {
    let d = Daemons::with_docker("cli_killed_group_import");
    let archive = d.path("group.tar");
    let archive_arg = archive.to_str().unwrap().to_string();
    let Some((counter, hog, sum, export)) = group_of_two(&d, &archive) else {
        return;
    };
    let export: Vec<&str> = export.iter().map(String::as_str).collect();
    lazarus(&d, &export).ok();
    d.docker(&["rm", &counter, &hog]).ok();
    let names = || d.docker(&["ps", "-a", "--format", "{{.Names}}"]).stdout;
    let mut reached = 0;
    for (moment, sig) in [
        (Moment::Created, libc::SIGKILL),
        (Moment::Criu, libc::SIGINT),
    ] {
        let mut p = Proc::spawn(lazarus_cmd(&d).args(["restore", "--import", &archive_arg]));
        // The second member: the first is made (and running) by then.
        let hit = reach(&d, &mut p, moment, &hog, &d.path("."), false);
        if hit {
            signal(&p, sig);
            reached += 1;
        }
        let out = p.wait(Duration::from_secs(300));
        let gone = poll(SETTLE, || {
            let n = names();
            let left = cli_leftovers(&d);
            let in_memory = dead_scratches_in_memory(&d, "import");
            (!n.lines().any(|n| n == counter || n == hog)
                && left.is_empty()
                && in_memory.is_empty())
            .then_some(())
        });
        eprintln!(
            "group {moment:?} signal {sig}: reached {hit}, cleaned up {}",
            gone.is_some()
        );
        assert!(
            gone.is_some(),
            "{moment:?}/{sig}: left after {SETTLE:?}: {:?}, {:?}, {:?}: {out}",
            names(),
            cli_leftovers(&d),
            dead_scratches_in_memory(&d, "import")
        );
    }
    assert_eq!(
        reached, 2,
        "the group import ended before a moment was reached"
    );
    lazarus(&d, &["restore", "--import", &archive_arg]).ok();
    wait_until("the restored hog to tick", Duration::from_secs(60), || {
        (!memhog(&d, &hog).is_empty()).then_some(())
    });
    assert_memhog_goes_on(&d, &hog, &sum);
    let tick = wait_ticks_past(&d, &counter, 0);
    wait_ticks_past(&d, &counter, tick);
}

/// `checkpoint --group` interrupted (Ctrl-C) while it writes the group's
/// archive, and killed (SIGKILL) while the members' archives are written:
/// every member runs on, thawed, and no file is left.
#[test]
fn an_interrupted_group_checkpoint_leaves_every_member_running() {
    let d = Daemons::with_docker("cli_killed_group_export");
    let out_dir = d.path("archives");
    fs::create_dir_all(&out_dir).unwrap();
    let Some((counter, hog, sum, export)) = group_of_two(&d, &out_dir.join("group.tar")) else {
        return;
    };
    let scratch = crate::support::lazarus::work_root(&d).join("work");
    for (moment, sig, dir) in [
        (Moment::Writing, libc::SIGINT, &out_dir),
        (Moment::Writing, libc::SIGKILL, &scratch),
    ] {
        let mut p = Proc::spawn(lazarus_cmd(&d).args(&export));
        // The members' archives are written in the scratch directory's
        // group-* directory, the group's beside the destination.
        let hit = poll(Duration::from_secs(120), || {
            if !p.running() {
                return Some(false);
            }
            let into = match dir == &scratch {
                true => fs::read_dir(&scratch)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .any(|g| writing_into(p.pid(), &g)),
                false => writing_into(p.pid(), dir),
            };
            into.then_some(true)
        })
        .unwrap_or(false);
        assert!(hit, "{moment:?}/{sig}: the group checkpoint ended first");
        signal(&p, sig);
        let out = p.wait(Duration::from_secs(300));
        let settled = poll(SETTLE, || {
            let thawed = [&counter, &hog].iter().all(|n| {
                name_is_running(&d, n) && !paused_in_containerd(&d, &inspect(&d, n, "{{.Id}}"))
            });
            (thawed && d.processes_named("criu").is_empty()).then_some(())
        });
        eprintln!(
            "group {moment:?} signal {sig}: settled {}",
            settled.is_some()
        );
        assert!(
            settled.is_some(),
            "{moment:?}/{sig}: members not thawed: {out}"
        );
        assert!(beside(&out_dir).is_empty(), "{:?}", beside(&out_dir));
        assert_memhog_goes_on(&d, &hog, &sum);
        let tick = wait_ticks_past(&d, &counter, 0);
        wait_ticks_past(&d, &counter, tick);
    }
}
