"""The README's Python code runs as written: every ```python block, in order, in one namespace,
from an empty folder (so relative paths such as ``runs/tiny`` land there)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 3


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text()), start=1):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), ns)
        except Exception as e:
            raise AssertionError(f"README python block {i} failed: {type(e).__name__}: {e}\n"
                                 f"{block}") from e
