//! SQLite's mutexes, implemented with `parking_lot`'s: a waiter spins
//! briefly before it sleeps.
//!
//! Every read transaction of a WAL file takes and releases a read lock on
//! its shared-memory index, under one mutex shared by all the process's
//! connections to the file, and takes the lock from the kernel (`fcntl`)
//! while holding that mutex when no other connection holds it. SQLite's
//! own mutexes are plain pthread mutexes, which put a waiter to sleep at
//! once: two threads reading the file each went through a futex wait and
//! wake on most reads (a context switch each), and a second reading thread
//! added almost nothing. These mutexes spin while the holder finishes its
//! few microseconds, then park.
//!
//! With them, SQLite's count of the memory it uses is turned off: SQLite
//! takes one process-wide mutex for it on every allocation and every free,
//! several per read of a row, so two threads reading took turns on it
//! (nothing in tierstack reads that count, `sqlite3_memory_used`).
//!
//! They are installed once, before this process opens its first
//! connection. SQLite takes a mutex implementation only before it is
//! initialized: if something else in the process (another library linking
//! the same SQLite) used it first, its own mutexes stay, and everything
//! still works, only slower. (`sqlite3_config` itself is not thread-safe:
//! a program that also opens SQLite connections of its own, through
//! `rusqlite` or, from C, through the SQLite in `libtierstack.a`, should
//! not do so on another thread at the very moment its first tierstack
//! cache opens its file. The Python and Node libraries each carry a copy
//! of SQLite that only tierstack uses.)

use std::ffi::c_int;
use std::sync::Once;

use parking_lot::lock_api::RawReentrantMutex;
use parking_lot::{RawMutex, RawThreadId};
use rusqlite::ffi;

/// One mutex of any kind: recursive, which serves SQLite's non-recursive
/// ones too (SQLite never locks those twice on one thread).
type Mutex = RawReentrantMutex<RawMutex, RawThreadId>;

/// SQLite's static mutexes, `SQLITE_MUTEX_STATIC_MAIN` (2) to
/// `SQLITE_MUTEX_STATIC_VFS3` (13).
static STATICS: [Mutex; 12] = [Mutex::INIT; 12];

/// Installs these mutexes, if SQLite is not yet initialized in this
/// process; called before every connection is opened (only the first call
/// does anything).
pub(super) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: METHODS is a valid, 'static sqlite3_mutex_methods whose
        // functions uphold SQLite's mutex contract (below). SQLite copies
        // it, or refuses it with SQLITE_MISUSE once initialized.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MUTEX, &METHODS) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialized before tierstack opened a file: its own mutexes stay"
            );
        }
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; refused, like the
        // above, once SQLite is initialized.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, c_int::from(false)) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialized before tierstack opened a file: it keeps counting its memory"
            );
        }
    });
}

static METHODS: ffi::sqlite3_mutex_methods = ffi::sqlite3_mutex_methods {
    xMutexInit: Some(nothing_to_do),
    xMutexEnd: Some(nothing_to_do),
    xMutexAlloc: Some(alloc),
    xMutexFree: Some(free),
    xMutexEnter: Some(enter),
    xMutexTry: Some(try_enter),
    xMutexLeave: Some(leave),
    xMutexHeld: Some(assume_yes),
    xMutexNotheld: Some(assume_yes),
};

/// Neither setting up nor tearing down needs anything: the statics are
/// constant-initialized.
unsafe extern "C" fn nothing_to_do() -> c_int {
    ffi::SQLITE_OK
}

/// A new mutex for `SQLITE_MUTEX_FAST` and `SQLITE_MUTEX_RECURSIVE`, a
/// static one for the static kinds, null for a kind SQLite does not have.
unsafe extern "C" fn alloc(kind: c_int) -> *mut ffi::sqlite3_mutex {
    match kind {
        ffi::SQLITE_MUTEX_FAST | ffi::SQLITE_MUTEX_RECURSIVE => {
            Box::into_raw(Box::new(Mutex::INIT)).cast()
        }
        _ => usize::try_from(kind - ffi::SQLITE_MUTEX_STATIC_MAIN)
            .ok()
            .and_then(|i| STATICS.get(i))
            .map_or(std::ptr::null_mut(), |m| {
                std::ptr::from_ref(m).cast_mut().cast()
            }),
    }
}

fn is_static(mutex: *mut ffi::sqlite3_mutex) -> bool {
    STATICS.as_ptr_range().contains(&mutex.cast_const().cast())
}

/// SQLite frees only the mutexes it allocated, unlocked.
unsafe extern "C" fn free(mutex: *mut ffi::sqlite3_mutex) {
    if !mutex.is_null() && !is_static(mutex) {
        // SAFETY: a non-static mutex was made by `alloc`'s Box.
        drop(unsafe { Box::from_raw(mutex.cast::<Mutex>()) });
    }
}

unsafe extern "C" fn enter(mutex: *mut ffi::sqlite3_mutex) {
    // SAFETY: SQLite passes a mutex `alloc` returned and not yet freed.
    unsafe { &*mutex.cast::<Mutex>() }.lock();
}

unsafe extern "C" fn try_enter(mutex: *mut ffi::sqlite3_mutex) -> c_int {
    // SAFETY: as in `enter`.
    match unsafe { &*mutex.cast::<Mutex>() }.try_lock() {
        true => ffi::SQLITE_OK,
        false => ffi::SQLITE_BUSY,
    }
}

unsafe extern "C" fn leave(mutex: *mut ffi::sqlite3_mutex) {
    // SAFETY: SQLite leaves only a mutex this thread entered.
    unsafe { (*mutex.cast::<Mutex>()).unlock() };
}

/// `xMutexHeld` and `xMutexNotheld` serve only assertions in a debug
/// build of SQLite; an implementation that cannot tell answers true.
unsafe extern "C" fn assume_yes(_: *mut ffi::sqlite3_mutex) -> c_int {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a process of its own (this test binary, run again for this
    /// test alone), so that nothing else in it has used SQLite first.
    #[test]
    fn sqlite_uses_these_mutexes_and_they_exclude_and_recurse() {
        const CHILD: &str = "TIERSTACK_MUTEX_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "tier::sqlite::mutex::tests::sqlite_uses_these_mutexes_and_they_exclude_and_recurse";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("1 passed"),
                "the child ran no test: {stdout}"
            );
            return;
        }
        install();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(one, 1);
        // SAFETY: reads one of SQLite's counters.
        let counted = unsafe { ffi::sqlite3_memory_used() };
        assert_eq!(counted, 0, "SQLite still counts the memory it uses");
        // SAFETY: mutexes from SQLite's allocator, entered and left in pairs.
        unsafe {
            let main = ffi::sqlite3_mutex_alloc(ffi::SQLITE_MUTEX_STATIC_MAIN);
            assert!(is_static(main), "SQLite's mutexes are not these");
            let recursive = ffi::sqlite3_mutex_alloc(ffi::SQLITE_MUTEX_RECURSIVE);
            ffi::sqlite3_mutex_enter(recursive);
            assert_eq!(ffi::sqlite3_mutex_try(recursive), ffi::SQLITE_OK);
            let held = recursive as usize;
            let other =
                std::thread::spawn(move || ffi::sqlite3_mutex_try(held as *mut ffi::sqlite3_mutex));
            assert_eq!(other.join().unwrap(), ffi::SQLITE_BUSY);
            ffi::sqlite3_mutex_leave(recursive);
            ffi::sqlite3_mutex_leave(recursive);
            let free = std::thread::spawn(move || {
                let mutex = held as *mut ffi::sqlite3_mutex;
                let rc = ffi::sqlite3_mutex_try(mutex);
                if rc == ffi::SQLITE_OK {
                    ffi::sqlite3_mutex_leave(mutex);
                }
                rc
            });
            assert_eq!(free.join().unwrap(), ffi::SQLITE_OK);
            ffi::sqlite3_mutex_free(recursive);
        }
    }
}
