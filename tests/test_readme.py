"""The README starts with the two fresh-machine commands, and .ci/run runs the second one verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    lines = ROOT.joinpath("README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```bash")
    block = lines[start + 1:lines.index("```", start)]
    return [line for line in block if line.strip() and not line.startswith("#")]


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = readme_commands()
    assert "kluekit train sts" in main_job and "kluekit predict sts" in main_job
    assert "../shared/data/klue_sts/" in main_job
    assert tests.endswith("python -m pytest")
    for command in (main_job, tests):  # never let pip pick a CUDA torch on these machines
        assert command.index("pip install -q torch==2.13.0" if "-q" in command else "pip install torch==2.13.0") \
            < command.index("pip install -q -e" if "-q -e" in command else "pip install -e")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = ROOT.joinpath(".ci", "run").read_text(encoding="utf-8").splitlines()
    assert readme_commands()[1] in ci
