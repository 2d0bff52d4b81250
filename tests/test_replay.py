"""``replay``: the capture played to the gateway with a dialect, compared with what the middleware did."""
from __future__ import annotations

import json

from smartcti_gateway.capture.reader import read_capture
from smartcti_gateway.capture.replay import steps_of
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


def test_an_event_that_came_while_a_command_was_in_flight_is_given_at_that_point(tmp_path, capsys):
    """The NGC's report of the Logon came after Protheus' Ready arrived, before the NGC was asked for it
    (a race every capture can hold): replayed after the Ready instead, the gateway would push READY,
    LOGGEDON where DigitroCTILink pushed LOGGEDON, READY."""
    out = record_default_round(tmp_path)
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    ready = next(r for r in records if r["dir"] == "to_middleware" and (r["parsed"] or {}).get("operation") == "Ready")
    asked = next(r for r in records if r["dir"] == "to_pabx" and (r["parsed"] or {}).get("method") == "cti.disponivel")
    logon = next(r for r in records if r["dir"] == "callback_to_gateway" and
                 r["parsed"]["params"][0]["EVENTO"] == "AGENTE_LOGADO")
    answered = next(r for r in records if r["dir"] == "callback_answer" and r["conn"] == logon["conn"])
    pushed = next(r for r in records if r["dir"] == "event_to_protheus" and
                  (r["parsed"] or {}).get("operation") == "LOGGEDON")
    gap = asked["t"] - ready["t"]
    logon["t"] = answered["t"] = ready["t"] + gap / 3
    pushed["t"] = ready["t"] + 2 * gap / 3        # what DigitroCTILink pushed for it, after it came
    records.sort(key=lambda r: r["t"])
    for seq, r in enumerate(records, 1):
        r["seq"] = seq
    out.write_text("\n".join([lines[0], *(json.dumps(r) for r in records)]) + "\n")
    steps, ngc_calls = steps_of(read_capture(out)[1])
    given_early = [st for st in steps if st.during]
    assert [st.params[0]["EVENTO"] for st in given_early] == ["AGENTE_LOGADO"]
    assert [m for m, _, _, before in ngc_calls if before] == ["cti.disponivel"]
    learned = tmp_path / "d.yaml"
    assert main(["learn", str(out), "-o", str(learned)]) == 0
    capsys.readouterr()
    assert main(["replay", str(out), "--dialect", str(learned)]) == 0
    assert "the gateway did what DigitroCTILink did, step by step" in capsys.readouterr().out
