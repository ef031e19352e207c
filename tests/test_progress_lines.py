"""Progress where nobody watches a terminal: plain lines, not silence until the end."""

from asrguard.experiments.common import ProgressBars


def test_a_log_file_gets_plain_progress_lines_and_the_final_count(capsys):
    with ProgressBars(enabled=True, stderr=True, every_s=0.0) as bars:  # pytest's stderr is not a terminal
        tick = bars.task("features", total=3)
        tick()
        tick(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["features: 1/3", "features: 3/3"]


def test_lines_are_spaced_in_time_but_the_end_is_always_shown(capsys):
    with ProgressBars(enabled=True, stderr=True, every_s=3600.0) as bars:
        tick = bars.task("attacks", total=4)
        for _ in range(4):
            tick()
    assert capsys.readouterr().err.splitlines() == ["attacks: 4/4"]


def test_disabled_bars_print_nothing(capsys):
    with ProgressBars(enabled=False) as bars:
        bars.task("features", total=2)(2)
    assert capsys.readouterr() == ("", "")
