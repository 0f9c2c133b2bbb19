"""The per-layer sensitivity report: the dominance reading, one real run end to end (JSON + PNG),
and bad input to its command (exit 2, one line, nothing written)."""

import json
import subprocess
import sys

import pytest

from common.paths import PROJECT_ROOT
from reporting.sensitivity import dominance, read, summary_lines


def _rows(drops):
    return [{"name": f"l{i}", "drop": [d]} for i, d in enumerate(drops)]


def test_dominance_reads_a_few_dominant_layers():
    d = dominance(_rows([0.1, 4.0, 0.2, 0.1, 1.0, -0.3, 0.1, 0.5]), 0, top_k=2)
    assert d["ranking"][:3] == ["l1", "l4", "l7"]
    total = 0.1 + 4.0 + 0.2 + 0.1 + 1.0 + 0.0 + 0.1 + 0.5  # a negative drop counts as 0
    assert d["summed_drop"] == pytest.approx(total)
    assert d["top_k_share"] == pytest.approx(5.0 / total)
    assert d["layers_for_half"] == 1
    assert d["largest_over_second"] == pytest.approx(4.0)
    assert d["largest_over_median"] == pytest.approx(4.0 / 0.15)


def test_dominance_of_an_even_profile_is_not_concentrated():
    d = dominance(_rows([1.0] * 10), 0, top_k=4)
    assert d["top_k_share"] == pytest.approx(0.4) and d["layers_for_half"] == 5
    assert d["largest_over_median"] == pytest.approx(1.0)
    nothing = dominance(_rows([-0.1, 0.0]), 0)
    assert nothing["summed_drop"] == 0 and nothing["largest_over_median"] is None


def test_one_command_writes_the_json_and_the_figure(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cli.sensitivity", "network=lenet5", "times_s=[86400,31536000]", "images=200",
         "seeds=[100,101]", "backend=serial", f"out={tmp_path / 'new' / 'folder'}",  # made when missing
         f"cache={tmp_path / 'cache.sqlite'}"],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env={"PATH": "/usr/bin:/bin",
                                                                            "AIMC_NO_REEXEC": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "new" / "folder"
    doc = read(out / "lenet5.json")
    assert (out / "lenet5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["split"] == "test" and doc["seeds"] == [100, 101] and doc["evaluations"] == 5 * 2
    assert [row["name"] for row in doc["layers"]] == ["0", "3", "7", "9", "11"]
    for row in doc["layers"]:  # the drop is the mean over chips of the per-chip drops
        for drop, per_chip in zip(row["drop"], row["drop_per_chip"]):
            assert drop == pytest.approx(sum(per_chip) / len(per_chip))
    assert "lenet5: 5 layers alone" in done.stdout and len(summary_lines(doc)) == 3


@pytest.mark.parametrize("override, message", [
    ("times_s=[0]", "times_s must list positive drift times"),
    ("seeds=[1,1]", "seeds must list distinct programming seeds"),
    ("images=0", "images must be at least 1"),
    ("split=train", "split must be validation or test"),
    ("backend=gpu", "backend must be one of"),
    ("network=nope", "nope"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, override, message):
    done = subprocess.run([sys.executable, "-m", "cli.sensitivity", override, f"out={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(ValueError, match="not a sensitivity document"):
        read(tmp_path / "x.json")
