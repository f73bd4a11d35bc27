//! Runs one piece of work per tenant on N worker threads, each with its own
//! database session. One tenant failing never stops the others unless asked;
//! a worker whose connection was lost opens a new one for the next tenant, so
//! only the tenant in flight fails.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

use crate::db::{Database, Session};

/// Runs `work` for every item on `jobs` threads. `on_done` is called as each
/// item finishes (for progress bars). With `fail_fast`, the first error stops
/// the handing out of further items; those are returned as None.
pub fn for_each<T, R, E>(
    db: &Database,
    items: &[T],
    jobs: usize,
    fail_fast: bool,
    work: impl Fn(&mut Session<'_>, &T) -> Result<R, E> + Sync,
    on_done: impl Fn(&T, &Result<R, E>) + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::db::DbError>,
{
    let options = PoolOptions {
        jobs,
        read_only: false,
        fail_fast,
    };
    for_each_by_member(db, items, options, one_group(jobs), work, on_done)
}

/// [`for_each`] with read-only sessions, for work that only reads (a dry
/// run): on SQLite they leave no `-shm`/`-wal` files behind.
pub fn for_each_read_only<T, R, E>(
    db: &Database,
    items: &[T],
    jobs: usize,
    work: impl Fn(&mut Session<'_>, &T) -> Result<R, E> + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::db::DbError>,
{
    let options = PoolOptions {
        jobs,
        read_only: true,
        fail_fast: false,
    };
    for_each_by_member(db, items, options, one_group(jobs), work, |_, _| {})
}

/// Every item in one group: `jobs` sessions in all.
fn one_group<T>(jobs: usize) -> ByMember<T> {
    ByMember {
        member_of: |_| "",
        limit: jobs,
    }
}

/// How the pool spreads tenants over the members of a fleet: at most `jobs`
/// sessions work on one member's tenants at a time, and at most `limit`
/// sessions in all, so that a fleet on several servers works on all of
/// them at once while no server gets more than it was asked to take.
pub struct ByMember<T> {
    pub member_of: fn(&T) -> &str,
    pub limit: usize,
}

/// How a pool runs.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Sessions at once (per member, [`ByMember`]).
    pub jobs: usize,
    /// Read-only sessions, for work that only reads.
    pub read_only: bool,
    /// Stop handing out items after the first error.
    pub fail_fast: bool,
}

/// [`for_each`] with `jobs` sessions per member and `by_member.limit` in
/// all (see [`ByMember`]); with one member, exactly [`for_each`].
pub fn for_each_by_member<T, R, E>(
    db: &Database,
    items: &[T],
    options: PoolOptions,
    by_member: ByMember<T>,
    work: impl Fn(&mut Session<'_>, &T) -> Result<R, E> + Sync,
    on_done: impl Fn(&T, &Result<R, E>) + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::db::DbError>,
{
    let PoolOptions {
        jobs,
        read_only,
        fail_fast,
    } = options;
    let groups = Schedule::by_member(items, by_member.member_of);
    let workers = by_member
        .limit
        .max(jobs)
        .min(jobs.saturating_mul(groups.len().max(1)));
    let schedule = Schedule::new(groups, jobs);
    pool(
        db, read_only, fail_fast, items, schedule, workers, work, on_done,
    )
}

/// Which item a worker takes next: the items in groups (one per member),
/// each group's in list order, at most `cap` of a group in flight.
struct Schedule {
    queues: Vec<VecDeque<usize>>,
    in_flight: Vec<usize>,
    cap: usize,
    stopped: bool,
}

enum Take {
    Item(usize, usize),
    Wait,
    Done,
}

impl Schedule {
    fn new(queues: Vec<VecDeque<usize>>, cap: usize) -> Schedule {
        let in_flight = vec![0; queues.len()];
        Schedule {
            queues,
            in_flight,
            cap: cap.max(1),
            stopped: false,
        }
    }

    /// The items' indexes grouped by member, groups in order of first
    /// appearance.
    fn by_member<T>(items: &[T], member_of: fn(&T) -> &str) -> Vec<VecDeque<usize>> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<VecDeque<usize>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let g = *index.entry(member_of(item)).or_insert_with(|| {
                groups.push(VecDeque::new());
                groups.len() - 1
            });
            groups[g].push_back(i);
        }
        groups
    }

    /// The next item (and its group) from the group with the fewest in
    /// flight, then the most left; Wait while every group with items left
    /// is at its cap.
    fn take(&mut self) -> Take {
        if self.stopped {
            return Take::Done;
        }
        let best = (0..self.queues.len())
            .filter(|&g| !self.queues[g].is_empty() && self.in_flight[g] < self.cap)
            .min_by_key(|&g| (self.in_flight[g], usize::MAX - self.queues[g].len()));
        match best {
            Some(g) => {
                self.in_flight[g] += 1;
                let i = self.queues[g].pop_front().expect("not empty");
                Take::Item(i, g)
            }
            None if self.queues.iter().all(VecDeque::is_empty) => Take::Done,
            None => Take::Wait,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pool<T, R, E>(
    db: &Database,
    read_only: bool,
    fail_fast: bool,
    items: &[T],
    schedule: Schedule,
    workers: usize,
    work: impl Fn(&mut Session<'_>, &T) -> Result<R, E> + Sync,
    on_done: impl Fn(&T, &Result<R, E>) + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::db::DbError>,
{
    let connect = || {
        if read_only {
            db.connect_read_only()
        } else {
            db.connect()
        }
    };
    let schedule = Mutex::new(schedule);
    let finished = Condvar::new();
    let lock = || schedule.lock().unwrap_or_else(|p| p.into_inner());
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = workers.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut session: Option<Session<'_>> = None;
                loop {
                    let (i, group) = {
                        let mut s = lock();
                        loop {
                            match s.take() {
                                Take::Item(i, g) => break (i, g),
                                Take::Done => return,
                                Take::Wait => {
                                    s = finished.wait(s).unwrap_or_else(|p| p.into_inner())
                                }
                            }
                        }
                    };
                    let item = &items[i];
                    let result = match session.as_mut() {
                        Some(s) => work(s, item),
                        None => match connect() {
                            Ok(s) => work(session.insert(s), item),
                            Err(e) => Err(E::from(e)),
                        },
                    };
                    {
                        let mut s = lock();
                        s.in_flight[group] -= 1;
                        if result.is_err() && fail_fast {
                            s.stopped = true;
                        }
                    }
                    finished.notify_all();
                    // A lost connection fails this item only: reconnect for the next.
                    if session.as_ref().is_some_and(|s| s.is_broken()) {
                        session = None;
                    }
                    on_done(item, &result);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: &mut Schedule) -> Option<(usize, usize)> {
        match s.take() {
            Take::Item(i, g) => Some((i, g)),
            Take::Wait => None,
            Take::Done => Some((usize::MAX, usize::MAX)),
        }
    }

    /// One session per member: each member's tenants go one at a time, the
    /// members side by side, the fullest first; a worker waits while every
    /// member with tenants left is busy, and is done when none is left.
    #[test]
    fn schedule_caps_each_member_and_spreads_over_them() {
        let members = ["a", "a", "a", "b", "c", "c"];
        let groups = Schedule::by_member(&members, |m: &&str| *m);
        assert_eq!(groups.len(), 3);
        let mut s = Schedule::new(groups, 1);
        assert_eq!(take(&mut s), Some((0, 0)), "a: most left");
        assert_eq!(take(&mut s), Some((4, 2)), "then c");
        assert_eq!(take(&mut s), Some((3, 1)), "then b");
        assert_eq!(take(&mut s), None, "every member busy: wait");
        s.in_flight[0] -= 1;
        assert_eq!(take(&mut s), Some((1, 0)), "a again, in list order");
        for g in 0..3 {
            s.in_flight[g] = 0;
        }
        assert_eq!(take(&mut s), Some((2, 0)));
        assert_eq!(take(&mut s), Some((5, 2)));
        assert_eq!(take(&mut s), Some((usize::MAX, usize::MAX)), "done");
    }
}
