import re

from conftest import REPO


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = [c for c in readme_commands() if "pytest" in c]
    assert len(test_command) == 1, "README must have exactly one test command block"
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")
                and not line.startswith(("set ", "cd "))]
    assert ci_lines == [test_command[0]]


def test_quickstart_installs_torch_first_and_runs_main_job():
    first = readme_commands()[0]
    assert first.index("pip install torch==2.13.0") < first.index("pip install -e .")
    # the CPU index first, then the pinned wheel as the fallback, before anything that needs torch
    assert first.index("--index-url https://download.pytorch.org/whl/cpu") < first.index("|| pip install torch==2.13.0")
    assert first.rstrip().endswith("asrguard demo")
