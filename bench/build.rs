//! Records the version of the compiler building the bench, which its report
//! states (`TIERSTACK_BENCH_RUSTC`).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("{rustc} (version unknown)"));
    println!("cargo:rustc-env=TIERSTACK_BENCH_RUSTC={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
