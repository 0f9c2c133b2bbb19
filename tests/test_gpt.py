"""The GPT of the zoo and its fortunes corpus: splits by document, shifted labels, causality, the
layer table, the missing-corpus message and the committed checkpoint."""

import dataclasses
import json
import math
import re

import pytest
import torch

from common.paths import PROJECT_ROOT
from workloads.datasets import DOCUMENT_END, DatasetError, load_dataset
from workloads.layers import build_layer_table
from workloads.registry import NetworkSpec
from workloads.train_zoo import accuracy, perplexity
from workloads.zoo import gpt

CONTEXT = 64


@pytest.fixture(scope="module")
def fortunes():
    return NetworkSpec.zoo("gpt").data()


def _decode(windows, vocabulary: str) -> str:
    """The character stream of a split (its windows are contiguous, stride = window length)."""
    return "".join(vocabulary[i] for i in windows.images.flatten().tolist())


def _whole_documents(text: str) -> set[str]:
    """Documents of a decoded stream, less the first and last (a window boundary may cut them)."""
    return set(text.split(DOCUMENT_END)[1:-1])


def test_splits_are_disjoint_by_document_and_deterministic(fortunes):
    texts = {name: _decode(getattr(fortunes, name), fortunes.vocabulary) for name in ("train", "validation", "test")}
    documents = {name: _whole_documents(text) for name, text in texts.items()}
    assert min(len(d) for d in documents.values()) > 500
    assert not documents["train"] & documents["validation"]
    assert not documents["train"] & documents["test"]
    assert not documents["validation"] & documents["test"]
    assert len(fortunes.validation) == 2000 and 3000 < len(fortunes.test) <= 5000 and len(fortunes.train) > 30_000
    again = NetworkSpec.zoo("gpt").data()
    for name in ("train", "validation", "test"):
        assert torch.equal(getattr(again, name).images, getattr(fortunes, name).images)
    reseeded = load_dataset("fortunes", validation_size=2000, seed=1, context=CONTEXT)
    assert torch.equal(reseeded.test.images, fortunes.test.images)  # the test split never moves
    assert not torch.equal(reseeded.validation.images, fortunes.validation.images)
    assert reseeded.vocabulary == fortunes.vocabulary  # fixed by the non-test documents


def test_small_corpus_splits_every_fortune_into_exactly_one_split(tmp_path):
    # each number twice, so every digit is frequent enough to be in the vocabulary (MIN_CHAR_COUNT)
    fortunes = [f"fortune {i:03d} (no. {i:03d}): a penny saved is a penny earned." for i in range(300)]
    (tmp_path / "sayings").write_text("\n%\n".join(fortunes) + "\n%\n")
    (tmp_path / "sayings.dat").write_bytes(b"\x00\x01binary index")  # strfile's index is skipped
    data = load_dataset("fortunes", root=tmp_path, validation_size=10, seed=3, context=16)
    found = {}
    for name in ("train", "validation", "test"):
        split = getattr(data, name)
        text = _decode(split, data.vocabulary) + data.vocabulary[int(split.labels[-1, -1])]
        found[name] = {int(n) for n in re.findall(r"fortune (\d{3})", text)}
    assert len(data.validation) == 10 and len(found["test"]) == 30
    assert not (found["train"] & found["validation"] or found["train"] & found["test"]
                or found["validation"] & found["test"])
    assert len(set().union(*found.values())) >= 295  # all but a fortune cut off at a split's end


def test_labels_are_the_inputs_shifted_by_one(fortunes):
    for split in (fortunes.train, fortunes.validation, fortunes.test):
        assert split.images.dtype == torch.int64 and split.labels.dtype == torch.int64
        assert split.images.shape == split.labels.shape and split.images.shape[1] == CONTEXT
        assert torch.equal(split.labels[:, :-1], split.images[:, 1:])
        assert torch.equal(split.labels[:-1, -1], split.images[1:, 0])  # windows follow each other
    assert fortunes.num_classes == len(fortunes.vocabulary) < 100
    assert fortunes.vocabulary[0] == "\ufffd" and " " in fortunes.vocabulary and "\n" in fortunes.vocabulary


def test_the_model_is_causal():
    torch.manual_seed(0)
    model = gpt(vocab_size=40, context=16, width=32, blocks=2, heads=4, mlp_dim=64).eval()
    tokens = torch.randint(0, 40, (3, 16))
    changed = tokens.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 40
    with torch.no_grad():
        before, after = model(tokens), model(changed.float())  # float ids work (the layer table traces zeros)
    assert before.shape == (3, 40, 16)  # class scores along dim 1
    assert torch.equal(before[:, :, :9], after[:, :, :9])
    assert not torch.allclose(before[:, :, 9:], after[:, :, 9:])


def test_layer_table_lists_every_projection_with_one_vector_per_token():
    spec = NetworkSpec.zoo("gpt")
    assert spec.input_shape == (CONTEXT,) and spec.model["context"] == CONTEXT
    table = build_layer_table(spec.build(), spec.input_shape, "gpt")
    assert len(table) == 4 * 6 + 1
    kinds = [layer.kind for layer in table.layers]
    assert kinds == ["attention"] * 4 + ["linear"] * 2 + ["attention"] * 4 + ["linear"] * 2 + \
        ["attention"] * 4 + ["linear"] * 2 + ["attention"] * 4 + ["linear"] * 2 + ["classifier"]
    assert all(layer.vectors == CONTEXT and layer.macs == CONTEXT * layer.rows * layer.cols for layer in table.layers)
    assert table.layers[-1].name == "head" and table.layers[-1].cols == spec.model["vocab_size"]
    width = spec.model["width"]  # causal attention: only the T (T + 1) / 2 kept scores, twice (scores, values)
    assert table.unmappable.macs == 4 * 2 * (CONTEXT * (CONTEXT + 1) // 2) * width


def test_the_workloads_module_names_run_the_commands(tmp_path):
    # python -m workloads.layers / workloads.train_zoo are aliases of the cli commands
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIMC_NO_REEXEC": "1"}
    shown = subprocess.run([sys.executable, "-m", "workloads.layers", "network=gpt"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if re.match(r"\s*\d+\s+\S", line)]
    assert len(rows) == 25 and "blocks.3.mlp.2" in shown.stdout and re.search(r"\bhead\s+classifier", shown.stdout)
    refused = subprocess.run([sys.executable, "-m", "workloads.train_zoo", "--networks", "gpt2"], cwd=PROJECT_ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "invalid choice: 'gpt2'" in refused.stderr


def test_input_shape_survives_the_description_round_trip_of_worker_processes():
    spec = NetworkSpec.zoo("gpt")
    assert NetworkSpec.from_config(dataclasses.asdict(spec)).input_shape == (CONTEXT,)
    assert NetworkSpec.zoo("vit").input_shape == (1, 28, 28)
    with pytest.raises(Exception, match="input_shape must be a list of positive integers"):
        NetworkSpec.from_config({**dataclasses.asdict(spec), "input_shape": [64, 0]})


def test_missing_corpus_names_the_path_and_remedy(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "none"))) as error:
        load_dataset("fortunes", root=tmp_path / "none")
    assert "apt-get install fortunes" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="apt-get install fortunes"):
        load_dataset("fortunes", root=tmp_path / "empty")


def test_checkpoint_matches_its_metadata_and_the_readme(fortunes):
    spec = NetworkSpec.zoo("gpt")
    metadata = json.loads(spec.checkpoint_path.with_suffix(".json").read_text())
    assert metadata["sha256"] == spec.checkpoint_sha256(), "checkpoint changed without its metadata"
    row = re.search(r"^\| `gpt` \|[^|]*\|[^|]*\| ([0-9.]+) \| ([0-9.]+) \|[^|]*\| ([0-9.]+) \|",
                    (PROJECT_ROOT / "README.md").read_text(), re.MULTILINE)
    assert row, "README.md has no zoo row for gpt"
    assert float(row.group(1)) == pytest.approx(metadata["test_accuracy"], abs=0.01)
    assert float(row.group(3)) == pytest.approx(metadata["test_perplexity"], abs=0.001)
    model = spec.load()
    subset = fortunes.test.subset(500)
    assert accuracy(model, subset) >= metadata["test_accuracy"] - 2.0
    assert accuracy(model, subset) > metadata["unigram_test_accuracy"] + 25.0
    assert math.log(perplexity(model, subset)) <= math.log(metadata["test_perplexity"]) + 0.1
