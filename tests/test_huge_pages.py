"""tortoise_lab puts large tensors on transparent huge pages (THP_MEM_ALLOC_ENABLE, set in tortoise_lab/__init__.py
before torch allocates), leaves a value the user set alone, and the benchmark runs upstream without ours."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# A fresh process: import tortoise_lab first (as the CLI does), then allocate 64 MB and touch it; print what the
# process holds on huge pages.
PROBE = """
import os, tortoise_lab, torch
x = torch.ones(16 * 2**20)
rollup = open("/proc/self/smaps_rollup").read().splitlines()
huge = next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:"))
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), tortoise_lab.HUGE_PAGES_BY_DEFAULT, huge)
"""


def _probe(**env) -> list[str]:
    environment = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO,
                          env={**environment, "PYTHONPATH": str(REPO), **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _thp_mode() -> str | None:
    try:
        text = THP_SETTING.read_text()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")]


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise"),
                    reason="this kernel gives no transparent huge pages on request (Linux with THP 'madvise' or "
                           "'always' needed)")
def test_importing_tortoise_lab_first_puts_large_tensors_on_huge_pages():
    value, ours, huge_kb = _probe()
    assert value == "1" and ours == "True"
    assert int(huge_kb) >= 32 * 1024  # most of the 64 MB tensor


@pytest.mark.skipif(_thp_mode() != "madvise",
                    reason="only where huge pages come on request ('madvise') does turning the request off show")
def test_a_value_the_user_set_is_left_alone():
    value, ours, huge_kb = _probe(THP_MEM_ALLOC_ENABLE="0")
    assert value == "0" and ours == "False" and int(huge_kb) < 32 * 1024


def test_the_benchmark_runs_upstream_without_our_huge_pages(monkeypatch):
    import tortoise_lab
    from tortoise_lab.tools.bench.runner import reference_env

    monkeypatch.setattr(tortoise_lab, "HUGE_PAGES_BY_DEFAULT", True)
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")
    assert "THP_MEM_ALLOC_ENABLE" not in reference_env()
    monkeypatch.setattr(tortoise_lab, "HUGE_PAGES_BY_DEFAULT", False)  # the user's own setting applies to both
    assert reference_env()["THP_MEM_ALLOC_ENABLE"] == "1"
