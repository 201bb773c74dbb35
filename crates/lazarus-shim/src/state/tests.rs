//! Every call in every state: allowed (None) or the code it gets.

use std::time::SystemTime;

use lazarus_core::checkpoint::image::Metadata;
use ttrpc::Code;
use Code::{FAILED_PRECONDITION as PRECONDITION, NOT_FOUND};

use super::*;

const EXIT: Exit = Exit {
    code: 137,
    at: SystemTime::UNIX_EPOCH,
};

fn pending() -> Box<PendingRestore> {
    Box::new(PendingRestore {
        plan: RestorePlan {
            images: "/images".into(),
            work: "/images".into(),
            metadata: Metadata::new("c", (4, 2, 1)),
            descriptors: Vec::new(),
            temporary: false,
            page_server: None,
            memory: None,
        },
        spec: Spec::default(),
        io: None,
    })
}

type Verdicts = Vec<(&'static str, Option<Code>)>;

/// The verdict of each call on a fresh state made by `make`.
fn verdicts(make: impl Fn() -> InitState) -> Verdicts {
    let v = |r: Result<()>| r.err().map(|e| e.code());
    vec![
        ("start", v(make().start("c").map(drop))),
        ("kill", v(make().kill("c", false).map(drop))),
        ("kill --all", v(make().kill("c", true).map(drop))),
        ("delete", v(make().delete("c").map(drop))),
        ("pause", v(make().pause("c"))),
        ("resume", v(make().resume("c"))),
        ("checkpoint", v(make().checkpoint("c"))),
        ("exec", v(make().exec("c"))),
        ("update", v(make().update("c"))),
        ("stats", v(make().stats("c"))),
        ("resize/io", v(make().io("c"))),
    ]
}

/// Verdicts in the order of [`verdicts`], from a compact list.
fn expect(codes: [Option<Code>; 11]) -> Verdicts {
    let names = verdicts(|| InitState::Running).into_iter().map(|(n, _)| n);
    names.zip(codes).collect()
}

const OK: Option<Code> = None;
const NO: Option<Code> = Some(PRECONDITION);
const GONE: Option<Code> = Some(NOT_FOUND);

#[test]
fn created() {
    // start kill all delete pause resume checkpoint exec update stats io
    let want = expect([OK, OK, OK, OK, NO, NO, NO, NO, OK, OK, OK]);
    assert_eq!(verdicts(|| InitState::Created), want);
    assert_eq!(InitState::Created.status(), Status::Created);
    assert_eq!(InitState::Created.delete("c").unwrap(), Removal::Force);
    let mut s = InitState::Created;
    assert!(matches!(s.start("c"), Ok(StartWork::Run)));
    assert!(matches!(s, InitState::Starting { exit: None }));
    // Killed before Start: its exit is reported at once.
    let mut s = InitState::Created;
    assert_eq!(s.exited(EXIT), Some(EXIT));
    assert_eq!(s.status(), Status::Stopped);
}

#[test]
fn created_from_checkpoint() {
    // Nothing runs: nothing to signal (FailedPrecondition, which a forced
    // delete takes as "nothing to kill"), no cgroup yet.
    let want = expect([OK, NO, NO, OK, NO, NO, NO, NO, NO, NO, NO]);
    assert_eq!(
        verdicts(|| InitState::CreatedFromCheckpoint(pending())),
        want
    );
    let mut s = InitState::CreatedFromCheckpoint(pending());
    assert_eq!(s.status(), Status::Created);
    assert_eq!(s.delete("c").unwrap(), Removal::Nothing);
    assert!(matches!(s.start("c"), Ok(StartWork::Restore(..))));
    assert!(matches!(s, InitState::Restoring { .. }));
}

#[test]
fn starting() {
    let make = || InitState::Starting { exit: None };
    let want = expect([NO, OK, OK, NO, NO, NO, NO, NO, OK, OK, OK]);
    assert_eq!(verdicts(make), want);
    assert_eq!(make().status(), Status::Created);
    let mut s = make();
    assert_eq!(s.started(), None);
    assert!(matches!(s, InitState::Running));
    let mut s = make();
    assert_eq!(s.start_failed(None), None);
    assert!(
        matches!(s, InitState::Created),
        "a failed start can be retried"
    );
}

#[test]
fn an_exit_while_starting_is_reported_when_start_ends() {
    let mut s = InitState::Starting { exit: None };
    assert_eq!(s.exited(EXIT), None, "held: TaskStart goes out first");
    assert_eq!(s.status(), Status::Created);
    assert_eq!(s.started(), Some(EXIT));
    assert_eq!(s.status(), Status::Stopped);
    let mut s = InitState::Starting { exit: None };
    s.exited(EXIT);
    assert_eq!(s.start_failed(None), Some(EXIT));
    assert_eq!(s.status(), Status::Stopped);
}

fn restoring() -> (InitState, Arc<AtomicBool>) {
    let abort = Arc::new(AtomicBool::new(false));
    let state = InitState::Restoring {
        abort: abort.clone(),
    };
    (state, abort)
}

fn stopped() -> InitState {
    InitState::Stopped(EXIT)
}

#[test]
fn restoring_verdicts() {
    // Kill is allowed: it calls the restore off.
    let want = expect([NO, OK, OK, NO, NO, NO, NO, NO, NO, NO, NO]);
    assert_eq!(verdicts(|| restoring().0), want);
    assert_eq!(restoring().0.status(), Status::Created);
    let (mut s, _) = restoring();
    s.start_failed(Some(pending()));
    assert!(
        matches!(s, InitState::CreatedFromCheckpoint(_)),
        "a failed restore keeps its plan for another Start"
    );
    let (mut s, _) = restoring();
    assert_eq!(s.started(), None);
    assert!(matches!(s, InitState::Running));
}

#[test]
fn a_restore_that_cannot_be_retried_stops_with_an_exit_to_report() {
    let (mut s, _) = restoring();
    let exit = s.start_failed(None).expect("an exit for Wait");
    assert_eq!(exit.code, 137);
    assert!(matches!(s, InitState::Stopped(e) if e == exit));
    assert_eq!(s.delete("c").unwrap(), Removal::Stopped);
}

#[test]
fn kill_during_a_restore_calls_it_off_and_it_ends_killed() {
    let (mut s, abort) = restoring();
    assert_eq!(s.kill("c", false).unwrap(), KillTarget::Restore);
    assert!(abort.load(Ordering::SeqCst), "the restore is told to stop");
    // Even with its plan back, a killed restore is not retried.
    let exit = s.start_failed(Some(pending())).expect("killed");
    assert_eq!(exit.code, 137);
    assert!(matches!(s, InitState::Stopped(_)));
}

#[test]
fn abandoned_transitions_end() {
    let (mut s, _) = restoring();
    assert_eq!(s.abandon().map(|e| e.code), Some(137));
    assert!(matches!(s, InitState::Stopped(_)));
    let mut s = InitState::Starting { exit: None };
    assert_eq!(s.abandon(), None);
    assert!(matches!(s, InitState::Created), "a start can be retried");
    let mut s = InitState::Checkpointing {
        paused: true,
        exit: None,
    };
    assert_eq!(s.abandon(), None);
    assert!(matches!(s, InitState::Paused));
    let mut s = InitState::Checkpointing {
        paused: false,
        exit: Some(EXIT),
    };
    assert_eq!(s.abandon(), Some(EXIT));
    for mut settled in [
        InitState::Running,
        InitState::Paused,
        stopped(),
        InitState::Created,
    ] {
        let before = settled.status();
        assert_eq!(settled.abandon(), None);
        assert_eq!(settled.status(), before, "settled states are left alone");
    }
}

#[test]
#[should_panic(expected = "started in state stopped")]
fn a_transition_in_the_wrong_state_is_a_bug() {
    stopped().started();
}

#[test]
fn running() {
    let want = expect([NO, OK, OK, NO, OK, NO, OK, OK, OK, OK, OK]);
    assert_eq!(verdicts(|| InitState::Running), want);
    assert_eq!(InitState::Running.status(), Status::Running);
    let mut s = InitState::Running;
    s.paused();
    assert!(matches!(s, InitState::Paused));
    let mut s = InitState::Running;
    s.checkpoint("c").unwrap();
    assert!(matches!(
        s,
        InitState::Checkpointing {
            paused: false,
            exit: None
        }
    ));
    let mut s = InitState::Running;
    assert_eq!(s.exited(EXIT), Some(EXIT));
    assert!(matches!(s, InitState::Stopped(e) if e == EXIT));
}

#[test]
fn paused() {
    let want = expect([NO, OK, OK, NO, NO, OK, OK, NO, OK, OK, OK]);
    assert_eq!(verdicts(|| InitState::Paused), want);
    assert_eq!(InitState::Paused.status(), Status::Paused);
    let mut s = InitState::Paused;
    s.resumed();
    assert!(matches!(s, InitState::Running));
    let mut s = InitState::Paused;
    s.checkpoint("c").unwrap();
    assert_eq!(s.status(), Status::Paused, "State while dumping");
    assert_eq!(s.checkpointed(), None);
    assert!(
        matches!(s, InitState::Paused),
        "back to paused after the dump"
    );
}

#[test]
fn checkpointing() {
    let make = || InitState::Checkpointing {
        paused: false,
        exit: None,
    };
    // Kill works (CRIU then fails); Delete, Pause, Exec, a second
    // Checkpoint and Update are refused; stats read the cgroup.
    let want = expect([NO, OK, OK, NO, NO, NO, NO, NO, NO, OK, OK]);
    assert_eq!(verdicts(make), want);
    assert_eq!(make().status(), Status::Running);
    let mut s = make();
    assert_eq!(s.checkpointed(), None);
    assert!(matches!(s, InitState::Running));
}

#[test]
fn an_exit_while_checkpointing_is_reported_when_the_dump_ends() {
    let mut s = InitState::Checkpointing {
        paused: false,
        exit: None,
    };
    assert_eq!(s.exited(EXIT), None);
    assert_eq!(s.status(), Status::Running, "until the dump ends");
    assert_eq!(code(s.delete("c")), NO, "no Delete under a dump");
    assert_eq!(s.checkpointed(), Some(EXIT));
    assert!(matches!(s, InitState::Stopped(e) if e == EXIT));
    assert_eq!(s.delete("c").unwrap(), Removal::Stopped);
}

#[test]
fn stopped_verdicts() {
    // Signalling a finished process is NotFound; --all reaches what is left.
    let want = expect([NO, GONE, OK, OK, NO, NO, NO, NO, NO, NO, NO]);
    assert_eq!(verdicts(stopped), want);
    assert_eq!(stopped().status(), Status::Stopped);
    assert_eq!(stopped().delete("c").unwrap(), Removal::Stopped);
    let mut s = stopped();
    assert_eq!(s.exited(EXIT), None, "a repeated exit is not news");
}

#[test]
fn deleted() {
    let want = expect([GONE; 11]);
    assert_eq!(verdicts(|| InitState::Deleted), want);
    let mut s = InitState::Deleted;
    assert_eq!(s.exited(EXIT), None, "an exit after Delete is not reported");
}

fn code<T>(r: Result<T>) -> Option<Code> {
    r.err().map(|e| e.code())
}

#[test]
fn execs() {
    let init = InitState::Running;
    let e = ExecState::Created;
    assert_eq!(code(e.start("c", "e", &init)), OK);
    assert_eq!(code(e.start("c", "e", &InitState::Paused)), NO);
    assert_eq!(
        code(e.start(
            "c",
            "e",
            &InitState::Checkpointing {
                paused: false,
                exit: None
            }
        )),
        NO
    );
    assert_eq!(code(e.kill("c", "e")), NO, "not started");
    assert_eq!(code(e.delete("c", "e")), OK);
    assert_eq!(e.status(&init), Status::Created);

    let mut e = ExecState::Running;
    assert_eq!(code(e.start("c", "e", &init)), NO);
    assert_eq!(code(e.kill("c", "e")), OK);
    assert_eq!(code(e.delete("c", "e")), NO);
    assert_eq!(e.status(&init), Status::Running);
    assert_eq!(e.status(&InitState::Paused), Status::Paused);
    assert!(e.exited());

    assert_eq!(e, ExecState::Stopped);
    assert_eq!(code(e.start("c", "e", &init)), NO);
    assert_eq!(code(e.kill("c", "e")), GONE, "already finished");
    assert_eq!(code(e.delete("c", "e")), OK);
    assert_eq!(e.status(&InitState::Paused), Status::Stopped);
    assert!(!e.exited(), "a repeated exit is not news");
}
