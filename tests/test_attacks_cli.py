import json

from typer.testing import CliRunner

from asrguard.cli import app

runner = CliRunner()


def test_attack_help_lists_every_attack():
    result = runner.invoke(app, ["attack", "--help"])
    assert result.exit_code == 0 and "universal" in result.output
    assert runner.invoke(app, ["attack-report", "--help"]).exit_code == 0


def test_attack_command_runs_resumes_and_reports(tiny_model, shared_data, tmp_path):
    out = tmp_path / "cw"
    args = ["attack", "--attack", "cw", "--out", str(out), "--corpus", "fsdd-digits", "--n", "2",
            "--model", str(tiny_model), "--data-root", str(shared_data), "--set", "max_iter=3",
            "--no-progress", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n"] == 2 and summary["attack"] == "cw"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.output)["n"] == 2
    clash = runner.invoke(app, [a if a != "max_iter=3" else "max_iter=4" for a in args])
    assert clash.exit_code == 2 and "error" in clash.output


def test_universal_command(tiny_model, shared_data, tmp_path):
    out = tmp_path / "u"
    result = runner.invoke(app, ["attack", "--attack", "universal", "--out", str(out), "--corpus", "fsdd-digits",
                                 "--n", "2", "--n-fit", "2", "--model", str(tiny_model), "--data-root",
                                 str(shared_data), "--set", "epochs=1", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n"] == 2 and "transcript_change_rate" in summary
    assert (out / "universal_delta.npy").exists()


def test_unknown_attack_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["attack", "--attack", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown attack" in result.output
