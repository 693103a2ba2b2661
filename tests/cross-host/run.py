"""Cross-host test: one process per host (Rust, C, Python, Node) on one
SQLite file. Every host writes raw bytes and a JSON document; every host
then reads what every host wrote: raw bytes byte for byte, JSON by meaning.

Run by tests/run-all after the host builds; needs the Rust example
`cross_host`, libtierstack.so, the Python wheel in .venv and the Node addon.
Prints `tests: N passed, M failed`.
"""
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "cross-host"


def target_dir() -> Path:
    base = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    triple = os.environ.get("CARGO_BUILD_TARGET")
    return (base / triple if triple else base) / "debug"


def build(out: Path) -> dict:
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "tierstack", "--example", "cross_host"],
        cwd=ROOT, check=True)
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "tierstack-ffi"], cwd=ROOT, check=True)
    lib = target_dir()
    subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
         "-I", str(ROOT / "include"), str(HERE / "host.c"), "-o", str(out / "host-c"),
         "-L", str(lib), f"-Wl,-rpath,{lib}", "-ltierstack"],
        check=True)
    python = ROOT / ".venv" / "bin" / "python"
    return {
        "rust": [str(lib / "examples" / "cross_host")],
        "c": [str(out / "host-c")],
        "python": [str(python), str(HERE / "host.py")],
        "node": ["node", str(HERE / "host.mjs")],
    }


def document(host: str) -> dict:
    return {"host": host, "files": ["button.tsx", "button.css"], "size": 1536,
            "draft": False, "text": "värde ✓ 日本", "nested": {"ratio": 1.5, "none": None}}


def raw(host: str) -> bytes:
    return bytes(range(256)) + host.encode()


def call(command: list, *args: str) -> str:
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-1:])} {' '.join(args[:3])}: "
                           f"exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def main() -> int:
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        hosts = build(Path(tmp))
        db = str(Path(tmp) / "shared.db")

        def write(host: str) -> None:
            command = hosts[host]
            call(command, db, "write", f"xhost:{host}:raw", raw(host).hex())
            text = json.dumps(document(host), ensure_ascii=False)
            if host in ("python", "node"):
                call(command, db, "write-json", f"xhost:{host}:json", text)
            else:
                call(command, db, "write", f"xhost:{host}:json", text.encode().hex())

        with ThreadPoolExecutor(len(hosts)) as pool:
            for host, outcome in zip(hosts, pool.map(lambda h: _catch(write, h), hosts)):
                if outcome:
                    print(f"FAIL {host} writes: {outcome}")
                    failed += 1
                else:
                    print(f"ok {host} writes raw bytes and a JSON document")
                    passed += 1

        def read_all(reader: str) -> list:
            results = []
            command = hosts[reader]
            for writer in hosts:
                got = call(command, db, "read", f"xhost:{writer}:raw")
                results.append((f"{reader} reads {writer}'s bytes", got == raw(writer).hex(), got[:40]))
                if reader in ("python", "node"):
                    got = json.loads(call(command, db, "read-json", f"xhost:{writer}:json"))
                else:
                    text = call(command, db, "read", f"xhost:{writer}:json")
                    got = json.loads(bytes.fromhex(text)) if text != "MISS" else None
                results.append((f"{reader} reads {writer}'s JSON", got == document(writer), str(got)[:60]))
            return results

        with ThreadPoolExecutor(len(hosts)) as pool:
            for reader, results in zip(hosts, pool.map(lambda h: _catch_all(read_all, h), hosts)):
                for name, ok, seen in results:
                    print(("ok " if ok else "FAIL ") + name + ("" if ok else f": got {seen}"))
                    passed += ok
                    failed += not ok
    print(f"tests: {passed} passed, {failed} failed")
    return 1 if failed else 0


def _catch(f, host):
    try:
        f(host)
        return None
    except Exception as e:  # reported as a failed check
        return str(e)


def _catch_all(f, host):
    try:
        return f(host)
    except Exception as e:  # reported as a failed check
        return [(f"{host} reads", False, str(e))]


if __name__ == "__main__":
    sys.exit(main())
