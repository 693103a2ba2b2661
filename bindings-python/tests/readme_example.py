"""Runs the ```python examples of the README's "## Python" section: the
first block, and the one under "### Loading".

``python readme_example.py`` runs both and exits non-zero if either fails;
the test suite calls :func:`run` too.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    """The first ```python block of the "## Python" section."""
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.S | re.M)
    if found is None:
        raise SystemExit("README.md: no ```python block in the Python section")
    return found.group(1)


def loading_example() -> str:
    """The ```python block of the Python section's "### Loading"."""
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    loading = section.split("\n### Loading\n", 1)[1].split("\n### ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", loading, re.S | re.M)
    if found is None:
        raise SystemExit('README.md: no ```python block in the Python section\'s "### Loading"')
    return found.group(1)


def run(code: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    """Runs the example (or ``code``) in a new interpreter in an empty
    directory."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-c", example() if code is None else code], cwd=cwd, capture_output=True, text=True
        )


if __name__ == "__main__":
    status = 0
    for code in (example(), loading_example()):
        result = run(code)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        status = status or result.returncode
    sys.exit(status)
