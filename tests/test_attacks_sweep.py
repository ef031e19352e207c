from asrguard.data import Utterance
from asrguard.experiments.dropout_sweep import conclusion, markdown_table, run_sweep
from attack_helpers import ToyRecognizer, speechlike


def test_dropout_sweep_writes_a_markdown_table(tmp_path):
    items = [Utterance.from_waveform("toy:0", speechlike(0.5, 0), 16000, "x")]
    result = run_sweep(ToyRecognizer(gain=5.0), items, tmp_path, rates=(0.05, 0.1), draws=3,
                       overrides={"tau_db": 10, "max_iter": 40, "max_shrinks": 1}, progress=False)
    assert [r["p_dr"] for r in result["rows"]] == [0.05, 0.1]
    assert all(0.0 <= r["success_with_dropout"] <= 1.0 for r in result["rows"])
    table = (tmp_path / "sweep.md").read_text()
    assert table.startswith("| p_DR |") and "0.05" in table and "p_tr = 0.05" in table
    rows = [{"p_dr": 0.05, "success": 0.9}, {"p_dr": 0.1, "success": 0.2}]
    assert "reproduces" in conclusion(rows) and "does not" not in conclusion(rows)
    assert "does not reproduce" in conclusion([{"p_dr": 0.05, "success": 0.9}, {"p_dr": 0.1, "success": 0.8}])
    assert markdown_table(result).count("\n|") >= 3
