"""The README's quickstart runs as written and prints what the README shows."""

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
NUMBER = r"\d+\.\d+"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_quickstart_runs_and_prints_what_the_readme_shows(capsys):
    (code,) = _blocks("python")
    (shown,) = _blocks("text")
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    expected = shown.strip().splitlines()
    assert [re.sub(NUMBER, "#", line) for line in printed] == [
        re.sub(NUMBER, "#", line) for line in expected
    ]
    # another CPU rounds float32 differently; a C-index may move in its last digit
    got = [float(v) for line in printed for v in re.findall(NUMBER, line)]
    want = [float(v) for line in expected for v in re.findall(NUMBER, line)]
    assert got == pytest.approx(want, abs=0.01)
