//! Runs one piece of work per tenant on N worker threads, each with its own
//! database session. One tenant failing never stops the others unless asked;
//! a worker whose connection was lost opens a new one for the next tenant, so
//! only the tenant in flight fails.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
    run(db, false, items, jobs, fail_fast, work, on_done)
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
    run(db, true, items, jobs, false, work, |_, _| {})
}

/// [`for_each_read_only`] with `on_done` called as each item finishes (for
/// progress bars).
pub fn for_each_read_only_reporting<T, R, E>(
    db: &Database,
    items: &[T],
    jobs: usize,
    work: impl Fn(&mut Session<'_>, &T) -> Result<R, E> + Sync,
    on_done: impl Fn(&T, &Result<R, E>) + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::db::DbError>,
{
    run(db, true, items, jobs, false, work, on_done)
}

fn run<T, R, E>(
    db: &Database,
    read_only: bool,
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
    let connect = || {
        if read_only {
            db.connect_read_only()
        } else {
            db.connect()
        }
    };
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut session: Option<Session<'_>> = None;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = match session.as_mut() {
                        Some(s) => work(s, item),
                        None => match connect() {
                            Ok(s) => work(session.insert(s), item),
                            Err(e) => Err(E::from(e)),
                        },
                    };
                    if result.is_err() && fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
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
