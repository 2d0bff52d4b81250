"""``replay``: the capture played to the gateway with a dialect, compared with what the middleware did."""
from __future__ import annotations

from smartcti_gateway.cli import main

from .test_learn import record_default_round


def test_replay_agrees_with_the_dialect_learned_and_tells_a_wrong_one(tmp_path, capsys):
    out = record_default_round(tmp_path)
    learned = tmp_path / "d.yaml"
    assert main(["learn", str(out), "-o", str(learned)]) == 0
    capsys.readouterr()
    assert main(["replay", str(out), "--dialect", str(learned)]) == 0
    said = capsys.readouterr().out
    assert "the gateway did what DigitroCTILink did, step by step" in said
    assert "normalised: callback and eventing URLs" in said
    # a dialect that calls Answer by another name: the NGC of the capture never heard of it
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("methods: {answer: cti.atender}\n")
    assert main(["replay", str(out), "--dialect", str(wrong)]) == 1
    said = capsys.readouterr().out
    assert "DIFFERENT step" in said and "Answer(device=2001): answered" in said
    assert "the gateway called [('cti.atender'" in said


def test_replay_refuses_bad_files_with_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "smartcti-capture", "version": 1, "started": 1, "sides": {}}\nnot json\n')
    dialect = tmp_path / "d.yaml"
    dialect.write_text("{}\n")
    assert main(["replay", str(bad), "--dialect", str(dialect)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    good = tmp_path / "ok.jsonl"
    good.write_text('{"format": "smartcti-capture", "version": 1, "started": 1, "sides": {}}\n')
    dialect.write_text("methods: {nao_existe: x}\n")
    assert main(["replay", str(good), "--dialect", str(dialect)]) == 2
    assert "unknown dialect.methods entry 'nao_existe'" in capsys.readouterr().err
