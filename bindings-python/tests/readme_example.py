"""Runs the ```python example of the README's "## Python" section.

``python readme_example.py`` exits with the example's status; the test
suite calls :func:`run` too.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    """The first ```python block of the "## Python" section."""
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.S | re.M)
    if found is None:
        raise SystemExit("README.md: no ```python block in the Python section")
    return found.group(1)


def run() -> "subprocess.CompletedProcess[str]":
    """Runs the example in a new interpreter in an empty directory."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", example()], cwd=cwd, capture_output=True, text=True)


if __name__ == "__main__":
    result = run()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
