"""Runs the ```python examples of the README's "## Python" section: the
first block, and those under "### Loading" and "### Writes".

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


def subsection_example(title: str) -> str:
    """The ```python block of the Python section's "### <title>"."""
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    subsection = section.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", subsection, re.S | re.M)
    if found is None:
        raise SystemExit(f'README.md: no ```python block in the Python section\'s "### {title}"')
    return found.group(1)


def loading_example() -> str:
    return subsection_example("Loading")


def writes_example() -> str:
    return subsection_example("Writes")


def run(code: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    """Runs the example (or ``code``) in a new interpreter in an empty
    directory."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-c", example() if code is None else code], cwd=cwd, capture_output=True, text=True
        )


if __name__ == "__main__":
    status = 0
    for code in (example(), loading_example(), writes_example()):
        result = run(code)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        status = status or result.returncode
    sys.exit(status)
