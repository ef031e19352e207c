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


def _speechlike_file(path, seconds=1.5, seed=0):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))
    sf.write(path, wave.astype(np.float32), 16000)
    return path


def test_attack_your_own_file_toward_your_own_target(tmp_path):
    audio = _speechlike_file(tmp_path / "mine.wav")
    out = tmp_path / "run"
    args = ["attack", "--attack", "cw", "--input", str(audio), "--target", "Go!", "--out", str(out),
            "--set", "max_iter=40", "--set", "max_shrinks=1", "--no-progress", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert row["id"] == f"input:{audio}" and row["target"] == "go" and (out / row["audio"]).is_file()
    assert row["success"], row["transcript"]


def test_attack_targets_from_a_csv_and_input_needs_a_target(tmp_path):
    first = _speechlike_file(tmp_path / "a.wav", seed=1)
    second = _speechlike_file(tmp_path / "b.wav", seed=2)
    table = tmp_path / "targets.csv"
    table.write_text("file,target\na.wav,go\nb.wav,stop\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["attack", "--attack", "cw", "--input", str(first), "--input", str(second),
                                 "--target-csv", str(table), "--out", str(out), "--set", "max_iter=2",
                                 "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert rows[f"input:{first}"]["target"] == "go" and rows[f"input:{second}"]["target"] == "stop"
    missing = runner.invoke(app, ["attack", "--attack", "cw", "--input", str(first), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--target" in missing.output


def test_demo_on_your_own_file_and_target(tmp_path):
    audio = _speechlike_file(tmp_path / "mine.wav", seconds=2.0, seed=3)
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--input", str(audio), "--target", "stop", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo.json").read_text())
    assert summary["source"] == str(audio) and summary["target"] == "stop"
    assert summary["verdicts"]["adversarial"]["verdict"] in ("adversarial", "benign")
    assert (out / "adversarial.wav").is_file() and (out / "uncertainty.png").is_file()
