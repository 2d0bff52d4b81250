"""scripts/bench in its seconds-long smoke mode: it completes and reports every figure.

A benchmark, not a timed test: nothing here asserts a speed (docs/performance.md has the figures).
"""
import json

from tests import bench


def test_bench_smoke_reports_every_figure(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert bench.main(["--smoke", "--devices", "60", "--agents", "20", "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    rows = bench.figures(results)
    assert len(rows) >= 15
    for name, gateway, floor, _target, _met in rows:
        assert gateway > 0, name
        assert floor is None or floor > 0, name
    assert results["gateway"]["scale"]["devices"] == 60
    ast = results["asterisk"]
    assert ast["gateway"]["commands"]["errors"] == 0 and ast["floor"]["commands"]["errors"] == 0
    assert ast["gateway"]["events"]["delivered"] == ast["gateway"]["events"]["events"]   # every AMI event reached Protheus
    assert any(name.startswith("Asterisk: ") for name, *_ in rows)
    printed = capsys.readouterr().out
    assert "| figure | gateway | floor |" in printed and "wrote" in printed
