"""``asrguard detect`` with a tiny saved model and detector."""

import json

import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrguard.cli import app
from asrguard.detect.detector import DOCUMENT_NAME
from _detect_helpers import clips, fitted_detector, tiny_recognizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    recognizer = tiny_recognizer(root)
    fitted_detector(recognizer).save(root / "detector")
    wav = root / "x.wav"
    sf.write(wav, clips(1, 2)[0], 16000)
    return root, wav


def test_detect_json_and_text(saved):
    root, wav = saved
    runner = CliRunner()
    args = ["detect", str(wav), "--detector", str(root / "detector"), "--model", str(root / "model0")]
    result = runner.invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output.strip().splitlines()[-1])
    assert body["file"] == str(wav) and body["verdict"] in ("benign", "adversarial")
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "verdict" in text.output


def test_detect_bad_inputs_give_one_clear_line(saved, tmp_path):
    root, wav = saved
    runner = CliRunner()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    result = runner.invoke(app, ["detect", str(bad), "--detector", str(root / "detector"),
                                 "--model", str(root / "model0")])
    assert result.exit_code == 2 and "bad.wav" in result.output and "Traceback" not in result.output
    tampered = tmp_path / "det"
    tampered.mkdir()
    for f in (root / "detector").iterdir():
        (tampered / f.name).write_bytes(f.read_bytes())
    doc = json.loads((tampered / DOCUMENT_NAME).read_text())
    doc["threshold"] = 99.0
    (tampered / DOCUMENT_NAME).write_text(json.dumps(doc))
    result = runner.invoke(app, ["detect", str(wav), "--detector", str(tampered), "--model", str(root / "model0")])
    assert result.exit_code == 2 and "modified or is corrupt" in result.output
    other = tiny_recognizer(tmp_path, seed=3)  # a different model folder: refused, mismatched recogniser
    result = runner.invoke(app, ["detect", str(wav), "--detector", str(root / "detector"),
                                 "--model", str(tmp_path / "model3")])
    assert result.exit_code == 2 and "fitted for recogniser" in result.output
    del other


def test_fit_detector_from_folders_and_an_attack_run_then_detect(saved, tmp_path):
    root, wav = saved
    benign, adversarial = tmp_path / "benign", tmp_path / "attack_run"
    benign.mkdir()
    (adversarial / "audio").mkdir(parents=True)
    for i, x in enumerate(clips(6, 3)):
        sf.write(benign / f"b{i}.wav", x, 16000)
    rows = []
    for i, x in enumerate(clips(6, 4, noisy=True)):
        sf.write(adversarial / "audio" / f"a{i}.wav", x, 16000)
        rows.append({"id": f"a{i}", "audio": f"audio/a{i}.wav", "success": i != 5})  # a failed attack is skipped
    (adversarial / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fitted"
    runner = CliRunner()
    result = runner.invoke(app, ["fit-detector", "--benign", str(benign), "--adversarial", str(adversarial),
                                 "--out", str(out), "--model", str(root / "model0"), "--realizations", "8"])
    assert result.exit_code == 0, result.output
    assert "6 benign + 5 adversarial" in result.output
    document = json.loads((out / DOCUMENT_NAME).read_text())
    assert document["classifier"]["name"] == "char-svm4" and document["features"]["n"] == 8
    detected = runner.invoke(app, ["detect", str(wav), "--detector", str(out), "--model", str(root / "model0"),
                                   "--json"])
    assert detected.exit_code == 0, detected.output
    # balanced masks: recorded in the saved detector; a rival kind refuses the dropout option
    balanced = tmp_path / "balanced"
    result = runner.invoke(app, ["fit-detector", "--benign", str(benign), "--adversarial", str(adversarial),
                                 "--out", str(balanced), "--model", str(root / "model0"), "--realizations", "10",
                                 "--masks", "balanced"])
    assert result.exit_code == 0, result.output
    assert json.loads((balanced / DOCUMENT_NAME).read_text())["features"]["masks"] == "balanced"
    refused = runner.invoke(app, ["fit-detector", "--benign", str(benign), "--out", str(tmp_path / "r"),
                                  "--model", str(root / "model0"), "--detector-kind", "temporal", "--masks", "balanced"])
    assert refused.exit_code != 0 and "--masks is a setting of the uncertainty detector" in refused.output


def test_fit_detector_names_a_missing_folder(saved, tmp_path):
    root, _ = saved
    result = CliRunner().invoke(app, ["fit-detector", "--benign", str(tmp_path / "nowhere"), "--out",
                                      str(tmp_path / "d"), "--model", str(root / "model0")])
    assert result.exit_code == 2 and "nowhere" in result.output and "Traceback" not in result.output


def test_detect_scores_every_file_and_fails_at_the_end_when_one_was_bad(saved, tmp_path):
    root, wav = saved
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF not really")
    result = CliRunner().invoke(app, ["detect", str(bad), str(wav), "--detector", str(root / "detector"),
                                      "--model", str(root / "model0"), "--json"])
    assert result.exit_code == 2
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["file"] for r in rows] == [str(bad), str(wav)]
    assert "error" in rows[0] and rows[1]["verdict"] in ("benign", "adversarial")
