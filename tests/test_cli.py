import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrguard.cli import app
from conftest import tone

runner = CliRunner()


def test_every_command_has_help():
    for command in (["--help"], ["transcribe", "--help"], ["train", "--help"], ["asr-eval", "--help"],
                    ["make-example", "--help"], ["data", "--help"], ["data", "manifest", "--help"],
                    ["data", "connected-digits", "--help"], ["data", "tts", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, command
        assert "Usage" in result.output


def test_transcribe_json_counts_realizations(tiny_model, tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(300, 1.0), 16000)
    result = runner.invoke(app, ["transcribe", str(path), "--model", str(tiny_model), "-n", "6", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sum(d["count"] for d in report["distinct"]) == 6
    assert report["p"] == 0.1


@pytest.mark.parametrize("kind", ["corrupt", "empty", "nan", "missing", "long"])
def test_bad_input_gives_one_clear_line(kind, tiny_model, tmp_path):
    path = tmp_path / f"{kind}.wav"
    if kind == "corrupt":
        path.write_bytes(b"this is not a wav file at all" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "nan":
        x = tone()
        x[5] = np.nan
        sf.write(path, x, 16000, subtype="FLOAT")
    elif kind == "long":
        sf.write(path, np.zeros(8000 * 600, dtype=np.int16), 8000)
    result = runner.invoke(app, ["transcribe", str(path), "--model", str(tiny_model), "-n", "2"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert str(path.name) in result.output


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_odd_sample_rates_and_stereo_are_handled(rate, tiny_model, tmp_path):
    path = tmp_path / "s.flac"
    sf.write(path, np.stack([tone(300, 0.5, rate)] * 2, axis=1), rate)
    result = runner.invoke(app, ["transcribe", str(path), "--model", str(tiny_model), "-n", "2", "--json"])
    assert result.exit_code == 0, result.output


def test_missing_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["transcribe", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and "model.safetensors" in result.output


def test_reproduce_refuses_unknown_paper_and_misplaced_fit_detector(tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(app, ["reproduce", "smith2021", "--out", str(tmp_path / "r")])
    assert unknown.exit_code == 2 and "smith2021" in unknown.output
    misplaced = runner.invoke(app, ["reproduce", "daubener2020", "--out", str(tmp_path / "r"),
                                    "--fit-detector", str(tmp_path / "d")])
    assert misplaced.exit_code == 2 and "jayashankar2020 only" in misplaced.output
    wrong_model = runner.invoke(app, ["reproduce", "daubener2020", "--out", str(tmp_path / "r"),
                                      "--model", str(tmp_path / "m")])
    assert wrong_model.exit_code == 2 and "jayashankar2020 only" in wrong_model.output
    wrong_setup = runner.invoke(app, ["reproduce", "daubener2020", "--out", str(tmp_path / "r"), "--setup", "paper"])
    assert wrong_setup.exit_code == 2 and "jayashankar2020 only" in wrong_setup.output
    unknown_setup = runner.invoke(app, ["reproduce", "jayashankar2020", "--out", str(tmp_path / "r"),
                                        "--setup", "long", "--data-root", str(tmp_path)])
    assert unknown_setup.exit_code != 0 and "unknown setup" in unknown_setup.output
    assert not (tmp_path / "r").exists()  # refused before any work


def test_a_reproduction_without_data_names_the_flag_and_leaves_no_setup_behind(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "jayashankar2020", "--quick", "--out", str(tmp_path / "out"),
                                      "--data-root", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "--data-root" in result.output
    assert not (tmp_path / "out" / "setup.json").exists()
