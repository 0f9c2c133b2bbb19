"""Train the network zoo on its datasets, then fine-tune it hardware-aware.

Command line: ``python -m cli.train_zoo`` (every network) or ``--networks resnet20 --seed 0``.

The image classifiers learn Fashion-MNIST; ``gpt`` learns next-character prediction on the
fortunes corpus (``workloads.datasets``), every position of a window being one prediction.
Two phases per network, three for recipes with ``device_epochs``:

1. Standard training (SGD with Nesterov momentum and a one-cycle schedule for CNNs, AdamW for
   the MLP and the transformers), random 2-pixel shifts and horizontal flips of images (token
   windows are used as they are).
2. Hardware-aware fine-tuning: every forward pass sees additive Gaussian weight noise
   of std ``0.08 * max|W|`` per Conv/Linear layer (aihwkit's ``ADD_NORMAL`` modifier with
   ``rel_to_actual_wmax``; the form of PCM programming noise, which is relative to g_max); the
   gradient is taken at the noisy weights and applied to the clean ones.
3. Device-aware fine-tuning (recipes with ``device_epochs``): every step sees the weights of a
   freshly programmed chip of the evaluation device model at a random age, with batch
   normalisation frozen (``accuracy.hwa``; the noise source is handed in by the command line,
   so this module does not depend on the accuracy model). It starts from phase 2's weights and
   draws from its own seeded streams, so from the same phase-2 weights it trains the same
   whether it follows phase 2 in one run or starts from the stored checkpoint of phases 1-2
   (``python -m cli.train_zoo --device-phase-only``, which checks that checkpoint's metadata).
   With BN frozen, a network's scale is no longer normalised, and one chip far off can produce a
   gradient that throws the weights into divergence (ResNet-20 at lr 0.01 did, 320 steps in):
   ``device_clip_norm`` clips each step's gradient to that L2 norm. A non-finite loss in any
   phase stops the run with a RecipeError before anything is written.

Writes ``workloads/checkpoints/<name>.pt`` (a state dict, loadable with ``weights_only=True``),
``<name>.json`` (accuracies, recipe, seed, sha256, versions; for a language model also the test
perplexity, exp of the mean next-token cross-entropy, and the accuracy of always predicting the
most frequent training token) and ``<name>.log``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ContextManager, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.io import atomic_write
from workloads.datasets import ImageSet
from workloads.registry import NetworkSpec, file_sha256

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
HWA_NOISE_STD = 0.08  # additive weight noise relative to the layer's max |w| (LionHeart's 0.08 is multiplicative)


@dataclass(frozen=True)
class Recipe:
    epochs: int
    hwa_epochs: int
    lr: float
    optimizer: str = "sgd"  # "sgd" (Nesterov, one-cycle) or "adamw" (cosine)
    weight_decay: float = 5e-4
    batch_size: int = 128
    torch_threads: int = 0  # 0 = torch's default; results differ bitwise between thread counts
    device_epochs: int = 0  # phase 3: device-aware fine-tuning at lr / 10 (needs a WeightPerturbation)
    device_clip_norm: float = 0.0  # phase 3: clip the gradient to this L2 norm (0: no clipping)


PHASE_3_FIELDS = ("device_epochs", "device_clip_norm")  # what phase 3 adds to phases 1-2's recipe


class RecipeError(ValueError):
    """A recipe that cannot run as asked; the message says what to do instead."""


class WeightPerturbation(Protocol):
    """Noise a training step sees on its weights (``accuracy.hwa.DeviceWeightNoise``)."""

    def applied(self, layers: Sequence[nn.Module], generator: torch.Generator) -> ContextManager[None]: ...

    def describe(self) -> dict: ...


RECIPES = {
    "mlp": Recipe(epochs=12, hwa_epochs=2, lr=2e-3, optimizer="adamw", weight_decay=1e-4),
    "lenet5": Recipe(epochs=10, hwa_epochs=2, lr=0.05),
    "vgg11": Recipe(epochs=3, hwa_epochs=1, lr=0.05),
    "resnet8": Recipe(epochs=6, hwa_epochs=1, lr=0.1, device_epochs=4),
    "resnet20": Recipe(epochs=6, hwa_epochs=1, lr=0.1),
    "mobilenetv2": Recipe(epochs=3, hwa_epochs=1, lr=0.1, weight_decay=4e-5, device_epochs=1),
    "vit": Recipe(epochs=15, hwa_epochs=2, lr=2e-3, optimizer="adamw", weight_decay=0.05),
    # One thread: the same checkpoint whatever the core count, and on 2 cores beside one other
    # busy process 0.37 s per step against 3.2 s with two threads.
    "gpt": Recipe(epochs=3, hwa_epochs=1, lr=2e-3, optimizer="adamw", weight_decay=0.05, batch_size=32,
                  torch_threads=1),
}


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Conv/Linear layers whose weights get noise (depthwise convs stay digital: no noise)."""
    return [m for m in model.modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and getattr(m, "groups", 1) == 1]


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """The model's batch-normalisation layers (any dimension)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (pad + crop) and horizontal flips, on a whole batch."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    shifted = padded[:, :, dy:dy + height, dx:dx + width]
    flip = torch.rand(batch, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), shifted.flip(3), shifted)


def is_token_data(data: ImageSet) -> bool:
    """Token ids (integers) rather than images."""
    return not data.images.is_floating_point()


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageSet, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent, in eval mode, over every label: one per image, or one per
    position of a token window (class scores along dim 1 of the logits in both cases)."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = model(data.images[start:start + batch_size])
        correct += int((logits.argmax(1) == data.labels[start:start + batch_size]).sum())
    return 100.0 * correct / data.labels.numel()


@torch.no_grad()
def perplexity(model: nn.Module, data: ImageSet, batch_size: int = 500) -> float:
    """exp of the mean cross-entropy (nats) over every label, in eval mode."""
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        logits = model(data.images[start:start + batch_size])
        total += float(F.cross_entropy(logits, data.labels[start:start + batch_size], reduction="sum"))
    return math.exp(total / data.labels.numel())


def unigram_accuracy(train: ImageSet, test: ImageSet) -> float:
    """Accuracy (percent) on ``test`` of always predicting the most frequent training label."""
    most_frequent = int(torch.bincount(train.labels.flatten()).argmax())
    return 100.0 * float((test.labels == most_frequent).double().mean())


class WeightNoise:
    """Context manager adding N(0, (std * max|W|)^2) to weights, restoring them on exit."""

    def __init__(self, layers: list[nn.Module], std: float, generator: torch.Generator) -> None:
        self.layers, self.std, self.generator = layers, std, generator
        self.saved: list[torch.Tensor] = []

    def __enter__(self) -> "WeightNoise":
        with torch.no_grad():
            for layer in self.layers:
                w = layer.weight
                self.saved.append(w.detach().clone())
                noise = torch.randn(w.shape, generator=self.generator) * (self.std * w.abs().max())
                w.add_(noise)
        return self

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for layer, clean in zip(self.layers, self.saved):
                layer.weight.copy_(clean)
        self.saved.clear()


def _optimizer(model: nn.Module, recipe: Recipe, lr: float, total_steps: int):
    if recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                    pct_start=0.15, anneal_strategy="cos")
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                              weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                    pct_start=0.2, anneal_strategy="cos")
    return opt, sched


def run_phase(model: nn.Module, train: ImageSet, recipe: Recipe, epochs: int, lr: float,
              generator: torch.Generator, noise_std: float, log,
              perturbation: WeightPerturbation | None = None) -> None:
    """``epochs`` passes over ``train``; with ``noise_std > 0`` every step sees additive weight
    noise; with a ``perturbation`` every step sees its weights instead, with batch normalisation
    frozen (eval mode: the running statistics are kept and not updated)."""
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    opt, sched = _optimizer(model, recipe, lr, epochs * steps_per_epoch)
    layers = weight_layers(model)
    images_to_augment = not is_token_data(train)
    for epoch in range(epochs):
        model.train()
        if perturbation is not None:
            for module in batch_norm_layers(model):
                module.eval()
        order = torch.randperm(len(train), generator=generator)
        total_loss, started = 0.0, time.time()
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            images = augment(train.images[idx], generator) if images_to_augment else train.images[idx]
            opt.zero_grad(set_to_none=True)
            if perturbation is not None:
                with perturbation.applied(layers, generator):
                    loss = F.cross_entropy(model(images), train.labels[idx])
                    loss.backward()
                if recipe.device_clip_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.device_clip_norm)
            elif noise_std > 0:
                with WeightNoise(layers, noise_std, generator):
                    loss = F.cross_entropy(model(images), train.labels[idx])
                    loss.backward()
            else:
                loss = F.cross_entropy(model(images), train.labels[idx])
                loss.backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RecipeError(f"training diverged at epoch {epoch + 1}, step {step + 1} (loss {value:g}); "
                                  "nothing was written: lower the learning rate"
                                  + (" or set device_clip_norm in the recipe" if perturbation is not None else ""))
            opt.step()
            sched.step()
            total_loss += value
        noise = perturbation.describe()["kind"] if perturbation is not None else noise_std
        log(f"  epoch {epoch + 1}/{epochs} noise={noise} loss={total_loss / steps_per_epoch:.4f} "
            f"({time.time() - started:.0f} s)")


@torch.no_grad()
def noisy_accuracy(model: nn.Module, data: ImageSet, std: float, seed: int, repeats: int = 3) -> float:
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(repeats):
        with WeightNoise(weight_layers(model), std, generator):
            scores.append(accuracy(model, data))
    return sum(scores) / len(scores)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads (0: leave torch's setting), restoring it on exit."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_network(network: str | NetworkSpec, recipe: Recipe, seed: int, out_dir: Path,
                  perturbation: WeightPerturbation | None = None, device_phase_only: bool = False) -> dict:
    """Train ``network`` (a zoo name or a description's spec) with ``recipe``; write its
    checkpoint, metadata and log to ``out_dir`` as ``<name>.pt``, ``.json`` and ``.log``.

    ``perturbation``: the device noise of phase 3 (required when ``recipe.device_epochs`` > 0).
    ``device_phase_only``: run phase 3 alone, on the checkpoint in ``out_dir``, which must be
    phases 1-2 of the same recipe and seed (its metadata says so)."""
    spec = NetworkSpec.zoo(network) if isinstance(network, str) else network
    if recipe.device_clip_norm < 0:
        raise RecipeError(f"{spec.name}: device_clip_norm must be >= 0 (0: no clipping), got {recipe.device_clip_norm}")
    if recipe.device_epochs and perturbation is None:
        raise RecipeError(f"{spec.name}: the recipe has {recipe.device_epochs} device-aware epochs; pass the device "
                         "noise (accuracy.hwa.DeviceWeightNoise)")
    if device_phase_only and not recipe.device_epochs:
        raise RecipeError(f"{spec.name}: the recipe has no device-aware phase to run")
    parent = _phases_1_2_checkpoint(spec.name, recipe, seed, out_dir) if device_phase_only else None
    with torch_threads(recipe.torch_threads):
        return _train_network(spec, recipe, seed, out_dir, perturbation, parent)


def _phases_1_2_checkpoint(name: str, recipe: Recipe, seed: int, out_dir: Path) -> dict:
    """The metadata of ``out_dir``'s checkpoint of ``name`` if it is phases 1-2 of ``recipe`` with
    ``seed`` and unchanged since written; otherwise a RecipeError saying why."""
    path = out_dir / f"{name}.json"
    if not path.is_file():
        raise RecipeError(f"{name}: no checkpoint metadata {path} to start the device-aware phase from; "
                         "train the whole recipe instead (without --device-phase-only)")
    meta = json.loads(path.read_text())
    known = {field.name for field in fields(Recipe)}
    try:  # fields added to Recipe after the checkpoint was written take their defaults
        stored = asdict(Recipe(**{k: v for k, v in meta.get("recipe", {}).items() if k in known}))
    except TypeError:
        stored = meta.get("recipe")
    defaults = {f.name: f.default for f in fields(Recipe)}
    wanted = {**asdict(recipe), **{key: defaults[key] for key in PHASE_3_FIELDS}}
    if stored != wanted or meta.get("seed") != seed:
        raise RecipeError(f"{name}: {path} records recipe {stored} and seed {meta.get('seed')}, not phases 1-2 of "
                         f"{wanted} with seed {seed}; train the whole recipe instead")
    if file_sha256(out_dir / f"{name}.pt") != meta.get("sha256"):
        raise RecipeError(f"{name}: {out_dir / f'{name}.pt'} changed since its metadata was written; train the whole "
                         "recipe instead")
    return meta


def _train_network(spec: NetworkSpec, recipe: Recipe, seed: int, out_dir: Path,
                   perturbation: WeightPerturbation | None, parent: dict | None) -> dict:
    name = spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"{name}.log"
    log_file = open(log_path, "a" if parent else "w")

    def log(message: str) -> None:
        print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = spec.data()
    model = spec.build()
    if parent is not None:
        model.load_state_dict(torch.load(out_dir / f"{name}.pt", weights_only=True))
    classes = model.eval()(data.train.images[:1]).shape[1]
    if classes != data.num_classes:
        raise RecipeError(f"{name}: the model scores {classes} classes but {data.name} has {data.num_classes}; "
                         f"set the model's class count (num_classes, or vocab_size) in conf/network/{name}.yaml")
    log(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, recipe {recipe}, seed {seed}, "
        f"{data.name}: {len(data.train)} / {len(data.validation)} / {len(data.test)} train / validation / test samples")
    started = time.time()
    if parent is None:
        run_phase(model, data.train, recipe, recipe.epochs, recipe.lr, generator, 0.0, log)
        clean_val = accuracy(model, data.validation)
        log(f"  after training: validation {clean_val:.2f}%")
        if recipe.hwa_epochs:
            run_phase(model, data.train, recipe, recipe.hwa_epochs, recipe.lr / 10, generator, HWA_NOISE_STD, log)
    else:
        log(f"{name}: device-aware phase only, from the checkpoint of phases 1-2 (sha256 {parent['sha256']})")
    device_phase: dict = {}
    if recipe.device_epochs:
        if parent is None:
            log(f"  after phases 1-2: test {accuracy(model, data.test):.2f}%")
        phase_started = time.time()
        # its own streams: the same phase whether it follows phase 2 in this run or a stored checkpoint
        torch.manual_seed(seed + 2)
        run_phase(model, data.train, recipe, recipe.device_epochs, recipe.lr / 10,
                  torch.Generator().manual_seed(seed + 2), 0.0, log, perturbation)
        device_phase = {"device_noise": perturbation.describe(),
                        "device_phase_seconds": round(time.time() - phase_started, 1)}
        if parent is not None:
            device_phase["phases_1_2"] = {key: parent[key] for key in
                                          ("sha256", "test_accuracy", "test_accuracy_weight_noise", "train_seconds")}
    result = {
        "network": name,
        "dataset": data.name,
        "seed": seed,
        "recipe": asdict(recipe),
        "hwa_noise_std_rel_wmax": HWA_NOISE_STD,
        **device_phase,
        "validation_accuracy": accuracy(model, data.validation),
        "test_accuracy": accuracy(model, data.test),
        "test_accuracy_weight_noise": noisy_accuracy(model, data.test, HWA_NOISE_STD, seed),
        "train_seconds": round(time.time() - started + (parent["train_seconds"] if parent else 0.0), 1),
        **({"test_perplexity": perplexity(model, data.test),
            "unigram_test_accuracy": unigram_accuracy(data.train, data.test)} if is_token_data(data.test) else {}),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    checkpoint = out_dir / f"{name}.pt"
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(checkpoint, buffer.getvalue())
    result["sha256"] = file_sha256(checkpoint)
    atomic_write(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    language = (f", perplexity {result['test_perplexity']:.3f} (most frequent token alone: "
                f"{result['unigram_test_accuracy']:.2f}%)" if "test_perplexity" in result else "")
    log(f"{name}: test {result['test_accuracy']:.2f}% (with weight noise {result['test_accuracy_weight_noise']:.2f}%)"
        f"{language}, {result['train_seconds']:.0f} s")
    log_file.close()
    return result


def accuracy_table(out_dir: Path, chip_sd: dict[str, str] | None = None) -> str:
    """The README's zoo table, from the metadata written beside each checkpoint; ``chip_sd``: per
    network, the cell of the standard deviation over programmed chips of the all-analog accuracy at
    1 day (measured by ``bench/bench_chip_spread.py``; "-" where not measured; see ``cli.train_zoo.chip_spread``)."""
    from workloads.layers import build_layer_table

    chip_sd = chip_sd or {}
    lines = ["| network | mappable layers | parameters | test accuracy (%) | with weight noise (%) | epochs + HWA epochs "
             "(+ device-aware) "
             "| test perplexity | chip sd, all analog at 1 day (points), 8 chips: as trained / BN re-estimated per chip "
             "[32 chips, as trained] |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in RECIPES:
        path = out_dir / f"{name}.json"
        if not path.is_file():
            continue
        meta = json.loads(path.read_text())
        spec = NetworkSpec.zoo(name)
        model = spec.build()
        layers = len(build_layer_table(model, spec.input_shape, name))
        params = sum(p.numel() for p in model.parameters())
        perplexity_cell = f"{meta['test_perplexity']:.3f}" if "test_perplexity" in meta else "-"
        recipe = meta["recipe"]
        epochs = f"{recipe['epochs']} + {recipe['hwa_epochs']}"
        if recipe.get("device_epochs"):
            epochs += f" + {recipe['device_epochs']}"
        lines.append(f"| `{name}` | {layers} | {params:,} | {meta['test_accuracy']:.2f} | "
                     f"{meta['test_accuracy_weight_noise']:.2f} | {epochs} "
                     f"| {perplexity_cell} | {chip_sd.get(name, '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # ``python -m workloads.train_zoo`` is an alias of ``python -m cli.train_zoo`` (the command lives there)
    import runpy

    runpy.run_module("cli.train_zoo", run_name="__main__", alter_sys=True)
