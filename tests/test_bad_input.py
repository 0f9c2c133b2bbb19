"""Bad input to train.py and evaluate.py: exit 2, one line of message, no traceback, and nothing
written beyond Hydra's own folder (its .hydra/ and log file), before any long work."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch import nn

from common.paths import PROJECT_ROOT

HYDRA_OWN = (".hydra", "evaluate.log", "train.log")


def run(entry: str, run_dir: Path, overrides: list[str], extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1", "PYTHONPATH": str(PROJECT_ROOT), **(extra_env or {})}
    return subprocess.run([sys.executable, entry, f"hydra.run.dir={run_dir}", *overrides], capture_output=True,
                          text=True, timeout=300, cwd=PROJECT_ROOT, env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs the table refers to: a junk zip, a policy for another observation size, a network
    with no Conv/Linear layer, a read-only place."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "junk.zip").write_bytes(b"PK not really a zip")
    torch.save({}, root / "empty.pt")
    import gymnasium as gym
    from sb3_contrib import MaskablePPO

    class Other(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (5,))
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}

        def action_masks(self):
            return [True, True]

    MaskablePPO("MlpPolicy", Other(), n_steps=16, batch_size=8).save(root / "other_space.zip")
    return root


NO_LAYERS = "network={name: flat, model: {_target_: tests.networks.no_mappable_layers}, checkpoint: INPUTS/empty.pt, dataset: {name: digits}}"
MLP = "network={name: m, model: {_target_: workloads.zoo.mlp}, checkpoint: workloads/checkpoints/mlp.pt, "
EVALUATE_CASES = [
    (["thresholds=[0]"], "thresholds must hold finite numbers > 0"),
    (["thresholds=[-1.0]"], "thresholds must hold finite numbers > 0"),
    (["times_s=[0]"], "times_s must hold finite numbers > 0"),
    (["times_s=[inf]"], "times_s must hold finite numbers > 0"),
    (["times_s=86400"], "times_s must be a list"),
    (["times_s=abc"], "times_s must be a list, e.g. times_s=[86400,31536000], got 'abc'"),
    (["times_s=[]"], "times_s is empty"),
    (["lifetime_threshold=-1"], "lifetime_threshold must be > 0"),
    (["verify.images=0"], "verify.images must be >= 1"),
    (["verify.seeds=[]"], "verify.seeds must be a non-empty list"),
    (["verify.seeds=[0,0]"], "verify.seeds repeats a seed"),
    (["report.seeds=[0]"], "share programming seeds [0] with verify.seeds"),
    (["certify.image_offset=10"], "certify.image_offset 10 overlaps the searches' validation images"),
    (["certify.plan.criterion=median"], "certify.plan: criterion must be one of"),
    (["certify.plan.population=wafers"], "certify.plan: population must be one of"),
    (["certify.plan.first_chips=1"], "certify.plan: population plan needs first_chips >= 2"),
    (["certify.plan.seed_start=100"], "share seeds [100, 101, 102, 103, 104, 105, 106, 107] with report.seeds"),
    (["certify.plan.draw=per_statement", "certify.plan.seed_start=50"], "draw per_statement) share seeds [100, 101"),
    (["certify.plan.draw=every"], "certify.plan: draw must be one of"),
    (["+certify.plan.chips=3"], "certify.plan: unknown population-plan key(s) chips"),
    (["policy_evaluations=0"], "policy_evaluations must be >= 1"),
    (["networks=[alexnet]"], "unknown network 'alexnet'"),
    (["networks=[]"], "networks is empty"),
    (["baselines=[nope]"], "unknown mapping method(s) 'nope'"),
    (["method_options={nope: {}}"], "method_options: unknown mapping method(s) 'nope'"),
    (["progress=maybe"], "progress must be true or false"),
    (["env.threshold_range=[5,1]"], "env.threshold_range must be [low, high]"),
    (["hw=nope"], "Could not find 'hw/nope'"),
    (["hw.tiles.count=0"], "hw.tiles.count must be > 0"),
    ([MLP.replace("checkpoint: workloads/checkpoints/mlp.pt, ", "checkpoint: /nowhere/m.pt") + "}"], "does not exist"),
    ([MLP + "dataset: {name: imagenet}}"], "unknown dataset 'imagenet'"),
    ([MLP + "dataset: {name: fashion_mnist, root: /nowhere}}"], "missing /nowhere/train-images-idx3-ubyte"),
    ([NO_LAYERS], "no nn.Conv2d or nn.Linear layer"),
    (["network={name: evil, model: {_target_: os.system, command: 'touch MARKER'}, checkpoint: x.pt}"],
     "not in a trusted package"),
    (["policy=/nowhere/model.zip"], "does not exist"),
    (["policy=INPUTS/junk.zip", "networks=[lenet5]"], "cannot be loaded"),
    (["policy=INPUTS/other_space.zip", "networks=[lenet5]"], "policy expects observations of shape (5,); this environment has (23,)"),
    (["mapping_file=/nowhere/m.json", "networks=[lenet5]"], "does not exist"),
    (["cache=/proc/aimc/cache.sqlite"], "cache: cannot write into /proc/aimc"),
]
TRAIN_CASES = [
    (["train.total_timesteps=0"], "train.total_timesteps must be >= 1"),
    (["train.total_timesteps=-5"], "train.total_timesteps must be >= 1"),
    (["train.networks=[alexnet]"], "unknown network 'alexnet'"),
    (["train.networks=[]"], "train.networks is empty"),
    (["train.n_envs=0"], "train.n_envs must be >= 1"),
    (["train.holdout=[lenet5]"], "train.networks and train.holdout share lenet5"),
    (["train.resume=/nowhere/model.zip"], "does not exist"),
    (["train.resume=INPUTS/junk.zip"], "train.resume"),
    (["train.vec_env=threads"], "train.vec_env must be one of subproc, dummy"),
    (["train.eval_thresholds=1"], "train.eval_thresholds must be a list"),
    (["train.total_timesteps_mode=sometimes"], "train.total_timesteps_mode must be one of extra, total"),
    (["agent.batch_size=1"], "agent.batch_size must be >= 2"),
    (["agent.learning_rate=-1"], "agent.learning_rate must be > 0"),
    (["env.reward.speedup=-1"], "env.reward.speedup must be >= 0"),
    (["seed=abc"], "seed must be a whole number"),
    (["agent=nope"], "Could not find 'agent/nope'"),
    (["hw=nope"], "Could not find 'hw/nope'"),
]


def test_the_table_is_long_enough():
    assert len(EVALUATE_CASES) + len(TRAIN_CASES) >= 30


def check_all(entry: str, cases, tmp_path: Path, inputs: Path) -> None:
    marker = tmp_path / "MARKER"

    def one(index_case):
        index, (overrides, message) = index_case
        overrides = [o.replace("INPUTS", str(inputs)).replace("MARKER", str(marker)) for o in overrides]
        return overrides, message, tmp_path / f"run{index}", run(entry, tmp_path / f"run{index}", overrides,
                                                                 {"AIMC_TRUSTED_PACKAGES": "tests"})

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(one, enumerate(cases)))
    failures = []
    for overrides, message, run_dir, done in outcomes:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        written = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
        beyond = [str(p) for p in written if p.parts[0] not in HYDRA_OWN]
        if (done.returncode != 2 or "Traceback" in done.stderr or len(lines) != 1
                or not lines[0].startswith("error: ") or message not in lines[0] or beyond):
            failures.append(f"{overrides}: exit {done.returncode}, stderr {done.stderr[-600:]!r}, wrote {beyond}")
    assert not marker.exists(), "a network description ran code"
    assert not failures, "\n".join(failures)


def test_evaluate_rejects_bad_input_up_front(tmp_path, files):
    check_all("evaluate.py", EVALUATE_CASES, tmp_path, files)


def test_train_rejects_bad_input_up_front(tmp_path, files):
    check_all("train.py", TRAIN_CASES, tmp_path, files)


def test_network_module_for_the_table_is_a_real_module():
    from tests.networks import no_mappable_layers

    assert isinstance(no_mappable_layers(), nn.Module)
