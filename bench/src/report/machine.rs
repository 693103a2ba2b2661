//! The machine a report was measured on, and when: CPU, cores, memory,
//! kernel, the compiler, the commit and the UTC date.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

/// What the report states about where and when it was measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Memory in bytes (`MemTotal` of `/proc/meminfo`), if known.
    pub memory_bytes: Option<u64>,
    /// The kernel's name and release.
    pub kernel: String,
    /// The compiler that built the bench (`rustc -V`).
    pub rustc: String,
    /// The commit of the source tree, marked when it had local changes.
    pub commit: Option<String>,
    /// When the run started, UTC, RFC 3339 to the second.
    pub date: String,
}

impl Machine {
    /// Reads the machine's facts now; a fact that cannot be read is
    /// `unknown` (or `None`).
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let kernel = format!(
            "{} {}",
            read("/proc/sys/kernel/ostype").trim(),
            read("/proc/sys/kernel/osrelease").trim()
        );
        Self {
            cpu: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".to_owned()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: mem_total(&read("/proc/meminfo")),
            kernel: if kernel.trim().is_empty() {
                std::env::consts::OS.to_owned()
            } else {
                kernel
            },
            rustc: env!("TIERSTACK_BENCH_RUSTC").to_owned(),
            commit: commit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }

    /// The memory as `15.6 GiB`.
    pub fn memory(&self) -> String {
        self.memory_bytes.map_or_else(
            || "unknown".to_owned(),
            |b| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        )
    }
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?;
    Some(kb.trim().parse::<u64>().ok()? * 1024)
}

/// The commit checked out in `repo`, 12 digits, with ` (with local
/// changes)` when tracked files differ from it; `None` outside a git
/// checkout or without git.
fn commit(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(repo).args(args).output();
        out.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(if changes.is_empty() {
        head
    } else {
        format!("{head} (with local changes)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_from_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\
                       model name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.000\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:        8131576 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(meminfo), Some(8_131_576 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        let machine = Machine {
            memory_bytes: mem_total(meminfo),
            ..Machine::detect()
        };
        assert_eq!(machine.memory(), "7.8 GiB");
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.rustc.starts_with("rustc "), "{}", m.rustc);
        // 2026-12-03T09:53:05Z
        assert_eq!(m.date.len(), 20, "{}", m.date);
        assert!(m.date.ends_with('Z'), "{}", m.date);
        assert!(!m.cpu.is_empty() && !m.kernel.is_empty());
    }
}
