//! What the file-system tests need beyond a temporary directory: mounts (a
//! read-only bind mount, a small tmpfs) and child processes of this test
//! binary, optionally running as an unprivileged user.
//!
//! Mounting needs root (`CAP_SYS_ADMIN`); CI runs as root. Where the
//! mechanism is unavailable the helpers return why, and the test prints
//! `skipped: <why>` and returns.

#![allow(dead_code)] // each test binary uses a part of this module

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user and group `nobody`.
pub const NOBODY: u32 = 65534;

/// The environment variable that makes a run of this binary a child: its
/// value is handed to the child test.
pub const CHILD_ENV: &str = "TIERSTACK_TEST_CHILD";

/// A mount, undone (detached) when dropped.
pub struct Mount {
    target: PathBuf,
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("test paths hold no NUL")
}

fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let source = CString::new(source).unwrap();
    let target_c = c_path(target);
    let fstype = fstype.map(|t| CString::new(t).unwrap());
    let data = data.map(|d| CString::new(d).unwrap());
    // SAFETY: NUL-terminated strings that outlive the call, or NULL.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(format!(
            "mount on {} is not permitted here: {}",
            target.display(),
            std::io::Error::last_os_error()
        )),
    }
}

impl Mount {
    /// Makes `dir` read-only in place: a bind mount of `dir` onto itself,
    /// remounted read-only. Files open for writing before keep working.
    pub fn read_only(dir: &Path) -> Result<Mount, String> {
        mount(dir.to_str().unwrap(), dir, None, libc::MS_BIND, None)?;
        let mount = Mount {
            target: dir.to_owned(),
        };
        self::mount(
            "none",
            dir,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )?;
        Ok(mount)
    }

    /// A tmpfs of `bytes` on `dir`.
    pub fn tmpfs(dir: &Path, bytes: u64) -> Result<Mount, String> {
        let options = format!("size={bytes},mode=0755");
        mount("tmpfs", dir, Some("tmpfs"), 0, Some(&options))?;
        Ok(Mount {
            target: dir.to_owned(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = c_path(&self.target);
        // SAFETY: a NUL-terminated path. Detached, so that a file still
        // open does not keep the mount (and the test directory) busy.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Whether this process can switch a child to another user.
pub fn is_root() -> bool {
    // SAFETY: no arguments, no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The command running the ignored test `name` of this binary as a child
/// process, with `arg` in [`CHILD_ENV`].
pub fn child_command(name: &str, arg: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, arg);
    command
}

/// Runs the ignored test `name` of this binary as a child process with
/// `arg` in [`CHILD_ENV`], as user and group `uid` if given.
pub fn run_child(name: &str, arg: &str, uid: Option<u32>) -> Output {
    let mut command = child_command(name, arg);
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(uid).env("HOME", "/");
    }
    command.output().unwrap()
}

/// The child's stdout, after checking that it succeeded.
pub fn child_stdout(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of the first stdout line `<name>=<value>` (the test harness
/// may print `test <name> ... ` before the first).
pub fn child_field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .map(|l| l.rsplit(" ... ").next().unwrap_or(l))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in the child's output:\n{stdout}"))
}

/// A temporary directory every user may enter and read (for children
/// running as another user).
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
