//! Which task process each pid is, so that the reaper's exits find their
//! process without any container's lock, and an exit that comes before its
//! pid is registered is not lost (containerd's Go shim does the same with
//! its `running` map and exit subscriptions around each start).
//!
//! A process's pid becomes known only after the runtime helper (or CRIU)
//! that made it returns, and the process may already have died by then.
//! So every spawn of a task process is bracketed by a [`Spawn`]: while one
//! is under way, exits of unknown pids are kept, and registering a pid
//! first looks there.

use std::collections::HashMap;
use std::sync::Mutex;

struct Table<T> {
    live: HashMap<i32, T>,
    /// Spawns under way.
    spawning: usize,
    /// Exits of unknown pids seen while a spawn was under way.
    early: HashMap<i32, i32>,
}

pub struct Pids<T> {
    table: Mutex<Table<T>>,
}

impl<T> Default for Pids<T> {
    fn default() -> Self {
        Pids {
            table: Mutex::new(Table {
                live: HashMap::new(),
                spawning: 0,
                early: HashMap::new(),
            }),
        }
    }
}

/// One spawn under way; register its pid with [`Spawn::register`].
pub struct Spawn<'a, T> {
    pids: &'a Pids<T>,
}

impl<T> Pids<T> {
    /// Call before the work that creates a process starts.
    pub fn spawn(&self) -> Spawn<'_, T> {
        self.table.lock().unwrap().spawning += 1;
        Spawn { pids: self }
    }

    /// The reaper collected `pid`: its owner (now forgotten), if it is a
    /// registered process. An unknown pid's exit is kept while a spawn is
    /// under way (it may be the spawned process), else dropped: it was a
    /// helper, CRIU, or a process the shim no longer tracks.
    pub fn exited(&self, pid: i32, code: i32) -> Option<T> {
        let mut t = self.table.lock().unwrap();
        let owner = t.live.remove(&pid);
        if owner.is_none() && t.spawning > 0 {
            t.early.insert(pid, code);
        }
        owner
    }

    /// Forgets every pid whose owner matches (its container was deleted).
    pub fn forget(&self, matches: impl Fn(&T) -> bool) {
        self.table.lock().unwrap().live.retain(|_, o| !matches(o));
    }

    #[cfg(test)]
    pub fn is_registered(&self, pid: i32) -> bool {
        self.table.lock().unwrap().live.contains_key(&pid)
    }
}

impl<T> Spawn<'_, T> {
    /// Registers the spawned process. If it has already exited, it is not
    /// registered and its exit status is returned: handle that exit now.
    pub fn register(&self, pid: i32, owner: T) -> Option<i32> {
        let mut t = self.pids.table.lock().unwrap();
        match t.early.remove(&pid) {
            Some(code) => Some(code),
            None => {
                t.live.insert(pid, owner);
                None
            }
        }
    }
}

impl<T> Drop for Spawn<'_, T> {
    fn drop(&mut self) {
        let mut t = self.pids.table.lock().unwrap();
        t.spawning -= 1;
        if t.spawning == 0 {
            t.early.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_before_registration_is_returned_by_register() {
        let pids = Pids::<&str>::default();
        let spawn = pids.spawn();
        assert_eq!(pids.exited(42, 137), None);
        assert_eq!(spawn.register(42, "c1"), Some(137));
        assert!(!pids.is_registered(42), "a dead process is not registered");
    }

    #[test]
    fn an_exit_after_registration_finds_its_owner_once() {
        let pids = Pids::default();
        pids.spawn().register(42, "c1");
        assert_eq!(pids.exited(42, 0), Some("c1"));
        assert_eq!(pids.exited(42, 0), None);
    }

    #[test]
    fn unknown_exits_are_kept_only_while_a_spawn_is_under_way() {
        let pids = Pids::<&str>::default();
        pids.exited(7, 1); // no spawn: dropped
        let spawn = pids.spawn();
        assert_eq!(spawn.register(7, "c1"), None);
        pids.exited(8, 1);
        drop(spawn);
        assert_eq!(pids.spawn().register(8, "c1"), None, "cleared at the end");
    }

    #[test]
    fn forget_drops_the_pids_of_an_owner() {
        let pids = Pids::default();
        pids.spawn().register(1, "a");
        pids.spawn().register(2, "b");
        pids.forget(|o| *o == "a");
        assert!(!pids.is_registered(1) && pids.is_registered(2));
    }
}
