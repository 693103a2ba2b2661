//! The Rust participant of the cross-host test (`tests/cross-host/run`):
//!
//! ```text
//! cross_host FILE write KEY HEX    stores the bytes HEX under KEY
//! cross_host FILE read KEY         prints the value as hex, or MISS
//! ```

use tierstack::blocking::Cache;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn main() -> tierstack::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, op, key, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cross_host FILE (write KEY HEX | read KEY)");
        std::process::exit(2);
    };
    let cache = Cache::builder().sqlite_path(file).build_blocking()?;
    match (op.as_str(), rest) {
        ("write", [value]) => cache.set(key.clone(), unhex(value))?,
        ("read", []) => match cache.get(key)? {
            Some(value) => println!("{}", hex(&value)),
            None => println!("MISS"),
        },
        _ => {
            eprintln!("usage: cross_host FILE (write KEY HEX | read KEY)");
            std::process::exit(2);
        }
    }
    cache.close()
}
