"""The README's Python quick start runs as written, and its two commands stay in CI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README quick start", "exec"), namespace)
    state = namespace["state"]
    assert tuple(state.memory.shape) == (16, 64, 16)
    assert tuple(state.link.shape) == (16, 64, 64)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert '.venv/bin/pip install torch==2.13.0 -e ".[dev]"' in readme
    assert 'pip install -q torch==2.13.0 -e ".[dev]"' in ci
    assert "python -m pytest" in readme and "python -m pytest" in ci


def test_memoria_snippet_runs():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Memoria: a drop-in engram memory", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README Memoria snippet", "exec"), namespace)
    reminded, indices = namespace["reminded"], namespace["indices"]
    assert reminded.shape[:2] == indices.shape and reminded.shape[0] == 2
    assert reminded.shape[-1] == 32
