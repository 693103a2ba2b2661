"""The README's Python example, and the typed usage file, run."""

import readme_example
import typecheck_usage


def test_readme_example_runs():
    example = readme_example.example()
    assert 10 <= len(example.strip().splitlines()) <= 25
    result = readme_example.run()
    assert result.returncode == 0, result.stderr
    assert '"tier": "memory"' not in result.stdout and "'tier': 'memory'" in result.stdout


def test_typed_usage_runs(tmp_path):
    typecheck_usage.main(tmp_path)


def test_readme_loading_and_writes_examples_run():
    for code in (readme_example.loading_example(), readme_example.writes_example()):
        result = readme_example.run(code)
        assert result.returncode == 0, result.stderr
