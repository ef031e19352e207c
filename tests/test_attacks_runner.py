import json

import numpy as np
import pytest
import torch
import soundfile as sf
from typer.testing import CliRunner

from asrguard.attacks.factory import make_attack
from asrguard.attacks.cw import CWAttack, CWConfig
from asrguard.attacks.runner import MANIFEST, finished_ids, report, run_attack
from asrguard.attacks.targets import TargetSampler
from asrguard.attacks.universal import UniversalAttack, UniversalConfig, tile
from asrguard.audio import db
from asrguard.cli import app
from asrguard.data import Utterance, read_jsonl
from asrguard.errors import ConfigError
from attack_helpers import ToyRecognizer, speechlike


ITEMS = [Utterance.from_waveform(f"toy:{i}", speechlike(0.3 + 0.1 * (i % 3), i), 16000, "x") for i in range(6)]
SAMPLER = TargetSampler("commands", seed=0, phrases=["ab", "go", "hi"])


class Counting(CWAttack):
    calls = 0

    def generate(self, audio_batch, targets=None):
        type(self).calls += len(targets)
        return super().generate(audio_batch, targets)


def attack():
    return Counting(ToyRecognizer(gain=5.0), CWConfig(tau_db=10, max_shrinks=2))


def test_runner_writes_wavs_and_manifest_and_resume_skips_finished_items(tmp_path):
    Counting.calls = 0
    run_attack(attack(), ITEMS[:4], tmp_path, sampler=SAMPLER, batch_size=3, progress=False)
    assert Counting.calls == 4
    rows = read_jsonl(tmp_path / MANIFEST)
    assert [r["id"] for r in rows] and len(rows) == 4
    for row in rows:
        assert {"id", "target", "success", "db_x_delta", "snr_db", "original_transcript", "transcript",
                "transcript_dropout", "config_hash", "audio", "reference"} <= set(row)
        audio, rate = sf.read(tmp_path / row["audio"], dtype="float32")
        assert sf.info(str(tmp_path / row["audio"])).subtype == "FLOAT" and rate == 16000
        original = next(it.waveform for it in ITEMS if it.id == row["id"])
        assert abs(db(audio.astype(np.float64) - original) - db(original) - row["db_x_delta"]) < 1e-6
        assert row["db_x_delta"] <= -10 + 1e-6
    # a run killed mid-append leaves a truncated last line: it is ignored and that item redone
    with open(tmp_path / MANIFEST, "a") as fh:
        fh.write('{"id": "toy:4", "succ')
    assert finished_ids(tmp_path) == {it.id for it in ITEMS[:4]}
    Counting.calls = 0
    run_attack(attack(), ITEMS, tmp_path, sampler=SAMPLER, batch_size=3, progress=False)
    # units come from the whole list sorted by length: (0, 3, 1) is done; (4, 2, 5) holds the
    # finished item 2, so it runs again whole (its results do not depend on the interruption)
    # and only 4 and 5 are written
    assert Counting.calls == 3
    rows = read_jsonl(tmp_path / MANIFEST)
    assert [r["id"] for r in rows] == [f"toy:{i}" for i in (0, 3, 1, 4, 2, 5)]
    Counting.calls = 0
    run_attack(attack(), ITEMS, tmp_path, sampler=SAMPLER, progress=False)
    assert Counting.calls == 0

    summary = report(tmp_path)
    assert summary["n"] == 6 and summary["success_rate"] == 1.0
    for key in ("mean_db_x_delta", "median_snr_db", "success_rate_with_dropout", "seconds_per_success"):
        assert summary[key] is not None
    assert summary["mean_db_x_delta"] <= -10

    result = CliRunner().invoke(app, ["attack-report", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n"] == 6


def test_runner_refuses_another_config_in_the_same_folder(tmp_path):
    run_attack(attack(), ITEMS[:1], tmp_path, sampler=SAMPLER, progress=False)
    other = CWAttack(ToyRecognizer(gain=5.0), CWConfig(tau_db=12, max_shrinks=2))
    with pytest.raises(ConfigError):
        run_attack(other, ITEMS, tmp_path, sampler=SAMPLER, progress=False)
    result = CliRunner().invoke(app, ["attack-report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "error" in result.output


def test_silent_items_are_recorded_as_skipped(tmp_path):
    items = [Utterance.from_waveform("toy:silent", np.zeros(8000, np.float32), 16000, "")] + ITEMS[:1]
    run_attack(attack(), items, tmp_path, sampler=SAMPLER, progress=False)
    summary = report(tmp_path)
    assert summary["n"] == 2 and summary["n_skipped"] == 1 and summary["success_rate"] == 0.5


def test_universal_perturbation_degrades_held_out_inputs(tmp_path):
    recognizer = ToyRecognizer(gain=5.0)
    fit = [speechlike(0.5, 100 + i) for i in range(8)]
    universal = UniversalAttack(recognizer, UniversalConfig(tau_db=6, epochs=5, batch_size=4, length_seconds=0.25))
    delta = universal.fit(fit)
    assert delta.shape == (4000,) and np.abs(delta).max() <= universal.eps
    held_out = [Utterance.from_waveform(f"held:{i}", speechlike(0.6, 200 + i), 16000, "zzz") for i in range(4)]
    run_attack(universal, held_out, tmp_path, progress=False)
    summary = report(tmp_path)
    assert summary["transcript_change_rate"] > 0.5
    assert summary["cer_before"] is not None and summary["cer_after"] is not None
    assert tile(torch.arange(3.0), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_make_attack_parses_overrides():
    recognizer = ToyRecognizer()
    a = make_attack("dr", recognizer, {"p_dr": "0.1", "draws": "2", "tau_db": "30"})
    assert a.config.p_dr == 0.1 and a.config.draws == 2 and a.config.tau_db == 30.0
    with pytest.raises(ConfigError):
        make_attack("cw", recognizer, {"nonsense": "1"})
    with pytest.raises(ConfigError):
        make_attack("xx", recognizer)


def test_attacks_report_their_steps_inside_a_batch():
    reports = []
    cw = CWAttack(ToyRecognizer(gain=5.0), CWConfig(tau_db=10, max_shrinks=2, check_every=2))
    cw.on_step = reports.append
    cw.generate([it.waveform for it in ITEMS[:2]], ["go", "hi"])
    steps = [r.step for r in reports]
    assert steps and steps == sorted(steps) and all(s % 2 == 0 for s in steps)
    assert all(r.batch_size == 2 and 0 <= r.reached <= 2 and r.max_steps == cw.config.max_iter for r in reports)
    assert set(reports[0].transcripts) == {0, 1} and all(isinstance(t, str) for t in reports[0].transcripts.values())


def test_a_run_without_a_terminal_prints_progress_lines(tmp_path, capsys):
    run_attack(attack(), ITEMS[:2], tmp_path, sampler=SAMPLER, batch_size=2, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cw: success")]
    assert lines and lines[-1].endswith("[2/2]")
