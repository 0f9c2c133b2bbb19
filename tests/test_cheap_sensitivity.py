"""The cheap sensitivity estimate (accuracy/cheap_sensitivity.py) on LeNet-5 with 200 validation
images: it reproduces the exact oracle's error where that is checkable, sees no error on an ideal
device, costs far less than the exact profile, and reads its calibration as JSON only."""

import json
import time

import numpy as np
import pytest
import torch

from accuracy.cheap_sensitivity import (CALIBRATION_PATH, ESTIMATORS, Calibration, CalibrationError,
                                        CalibrationFile, cheap_profile, fit_calibration, interpolate_log_t,
                                        load_calibration, measure, parse_calibration, select_calibration)
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from accuracy.surrogate import T_GRID_S
from workloads.registry import NetworkSpec

TIMES = (1e2, 1e5, 1e8)
# No programming, read or output noise, no drift, 1e-7 DAC/ADC steps: the twin is the digital layer.
IDEAL = NoiseConfig(name="ideal", prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0, out_noise=0.0,
                    inp_res=1e-7, out_res=1e-7)


def lenet(fashion, noise=NoiseConfig(name="lionheart"), images=200):
    # Two batches of 100: the twins' noise draws must continue across batches as the exact path's do.
    return AccuracyOracle(NetworkSpec.zoo("lenet5"), noise, images=images, seeds=(0, 1), batch_size=100,
                          data=fashion.validation)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Small tensors: a second thread only adds contention on a busy machine (15x slower measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def oracle(fashion):
    return lenet(fashion)


@pytest.fixture(scope="module")
def raw(oracle):
    return measure(oracle, TIMES, ESTIMATORS)


def test_scores_have_one_row_per_layer_and_one_column_per_time(oracle, raw):
    for estimator in ESTIMATORS:
        assert raw.values[estimator].shape == (len(oracle.table), len(TIMES))
        assert np.isfinite(raw.values[estimator]).all()  # every LeNet-5 layer is analog-capable
    assert raw.cost["twin_passes"] == len(oracle.table) * 2 * len(TIMES)


def test_error_grows_with_drift_time_and_vanishes_on_an_ideal_device(fashion, raw):
    rel_mse = raw.values["rel_mse"]
    assert (rel_mse > 1e-4).all()
    assert (np.diff(rel_mse, axis=1) > 0).all(), rel_mse
    ideal = measure(lenet(fashion, IDEAL, images=100), (1e5,), ("rel_mse", "margin_flips"))
    assert (ideal.values["rel_mse"] < 1e-8).all(), ideal.values["rel_mse"]
    assert (ideal.values["margin_flips"] == 0).all()


def test_margin_flips_of_the_output_layer_equal_the_exact_drop(oracle):
    # The logits are the last layer's output, so with every rival class considered the
    # linearised flip count is exact: it matches the oracle only if the twins reproduce the
    # exact path's device states, noise draws and batches.
    last = len(oracle.table) - 1
    raw = measure(oracle, (1e5,), ("margin_flips",), competitors=9)
    mapping = np.zeros(len(oracle.table), bool)
    mapping[last] = True
    exact = oracle.evaluate(mapping, 1e5).drop
    assert exact != 0.0
    assert raw.values["margin_flips"][last, 0] == pytest.approx(exact, abs=1e-9)


def test_digital_only_layers_are_nan(fashion):
    mobile = AccuracyOracle(NetworkSpec.zoo("mobilenetv2"), NoiseConfig(name="lionheart"), images=20,
                            seeds=(0,), batch_size=20, data=fashion.validation)
    raw = measure(mobile, (1e5,), ("rel_mse",))
    capable = np.array([layer.analog_capable for layer in mobile.table.layers])
    assert not capable.all()
    assert np.isnan(raw.values["rel_mse"][~capable]).all()
    assert np.isfinite(raw.values["rel_mse"][capable]).all()


def test_cheap_profile_costs_far_less_than_the_exact_profile(fashion, oracle):
    calibration = CalibrationFile("margin_flips", {"margin_flips": Calibration("margin_flips", 1.0, 1.0)})
    fresh = lenet(fashion)
    fresh.baseline()
    mapping = np.zeros(len(fresh.table), bool)
    mapping[::2] = True
    start = time.perf_counter()
    fresh.evaluate(mapping, 86400.0)
    one_exact = time.perf_counter() - start
    start = time.perf_counter()
    profile, cost = cheap_profile(lenet(fashion), calibration=calibration)
    cheap = time.perf_counter() - start
    exact_profile = len(fresh.table) * len(T_GRID_S)  # one exact evaluation per layer and time
    assert cheap < exact_profile * one_exact / 3, (cheap, one_exact)
    assert profile.drops.shape == (len(fresh.table), len(T_GRID_S))
    assert cost["times"] == len(calibration.times_s) and cost["estimator"] == "margin_flips"
    assert cost["backward_passes_per_image"] == 2  # one per rival class


def test_identity_calibration_profile_is_the_flips_interpolated(oracle, raw):
    calibration = CalibrationFile("margin_flips", {"margin_flips": Calibration("margin_flips", 1.0, 1.0)},
                                  times_s=TIMES)
    profile, _ = cheap_profile(oracle, calibration=calibration)
    flips = raw.values["margin_flips"]
    for k, t in enumerate(TIMES):
        np.testing.assert_allclose(profile.drops[:, T_GRID_S.index(t)], flips[:, k], atol=1e-9)


def test_interpolation_in_log_time_by_hand():
    values = np.array([[0.0, 3.0, 9.0]])
    out = interpolate_log_t(values, (1e2, 1e5, 1e8), (1e1, 1e2, 1e3, 1e6, 1e9))
    # log10 t = 1: the first segment's line extended (slope 1 per decade): -1
    np.testing.assert_allclose(out, [[-1.0, 0.0, 1.0, 5.0, 11.0]])


def test_fit_recovers_a_power_law():
    raw = np.linspace(0.01, 1.0, 40)
    calibration, mae = fit_calibration("fisher", raw, 2.5 * raw ** 0.6)
    assert calibration.power == pytest.approx(0.6) and calibration.scale == pytest.approx(2.5, rel=1e-6)
    assert mae < 1e-9


def test_form_is_chosen_by_leave_one_network_out_error():
    rng = np.random.default_rng(0)
    ranges = {"a": (0.01, 0.1), "b": (0.05, 0.5), "c": (0.2, 2.0)}
    raw = {name: rng.uniform(low, high, 30) for name, (low, high) in ranges.items()}
    calibration, table = select_calibration("fisher", {n: (r, 3.0 * np.sqrt(r)) for n, r in raw.items()})
    assert table["form"] == "power" and set(table["forms"]) == {"linear", "power"}  # no identity for a raw score
    assert calibration.power == pytest.approx(0.5) and calibration.scale == pytest.approx(3.0)
    assert table["forms"]["linear"]["cv_mae_points"] > 10 * table["forms"]["power"]["cv_mae_points"]
    # Flips already in points: every form fits, and the one with no parameters wins the tie.
    calibration, table = select_calibration("margin_flips", {n: (r, r.copy()) for n, r in raw.items()})
    assert table["form"] == "identity" and (calibration.scale, calibration.power) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 networks"):
        select_calibration("fisher", {"a": (raw["a"], raw["a"])})


def test_committed_calibration_is_json_with_every_estimator():
    data = json.loads(CALIBRATION_PATH.read_text())
    file = load_calibration()
    assert set(file.calibrations) == set(ESTIMATORS) and file.default in ESTIMATORS
    assert file.to_dict()["calibrations"] == data["calibrations"]
    assert list(file.times_s) == data["times_s"]


@pytest.mark.parametrize("change, message", [
    ({"format": "pickle"}, "not a cheap-sensitivity calibration"),
    ({"version": 99}, "version"),
    ({"calibrations": {"fisher": {"scale": "2", "power": 1.0}}}, "finite numbers"),
    ({"calibrations": {"fisher": {"scale": 1.0, "power": 0.0}}}, "power > 0"),
    ({"calibrations": {"eval": {"scale": 1.0, "power": 1.0}}}, "unknown estimator"),
    ({"default": "rel_mse"}, "default estimator"),
    ({"times_s": [1e5, 1e2]}, "times_s"),
    ({"competitors": 0}, "competitors"),
])
def test_bad_calibrations_are_refused(change, message):
    good = CalibrationFile("fisher", {"fisher": Calibration("fisher", 1.0, 0.5)}).to_dict()
    assert parse_calibration(good).default == "fisher"
    with pytest.raises(CalibrationError, match=message):
        parse_calibration({**good, **change})


def test_a_calibration_file_that_is_not_json_is_refused(tmp_path, oracle):
    path = tmp_path / "calibration.json"
    path.write_bytes(b"\x80\x04\x95code")  # a pickle's first bytes: never unpickled
    with pytest.raises(CalibrationError, match="not JSON"):
        cheap_profile(oracle, calibration=path)
    with pytest.raises(CalibrationError, match="no calibration file"):
        load_calibration(tmp_path / "missing.json")


def test_bad_arguments_are_clear(oracle):
    with pytest.raises(ValueError, match="estimators"):
        measure(oracle, TIMES, ("accuracy",))
    with pytest.raises(ValueError, match="increasing"):
        measure(oracle, (1e5, 1e2))


def test_cached_cheap_profile_is_measured_once_and_keyed_by_the_calibration(tmp_path, oracle):
    from accuracy.cache import ResultCache
    from accuracy.cheap_sensitivity import cached_cheap_profile

    cache = ResultCache(tmp_path / "cache.sqlite")
    first = cached_cheap_profile(oracle, cache)
    again = cached_cheap_profile(oracle, cache)
    assert not first.cached and again.cached
    np.testing.assert_array_equal(first.profile.drops, again.profile.drops)
    assert again.baseline == first.baseline == oracle.baseline()
    assert again.cost["seconds"] == first.cost["seconds"] > 0  # the measured cost travels with the estimate
    committed = load_calibration()
    other = CalibrationFile(committed.default, {name: Calibration(name, 2 * c.scale, c.power)
                                                for name, c in committed.calibrations.items()},
                            committed.times_s, committed.competitors, committed.sequence_positions)
    doubled = cached_cheap_profile(oracle, cache, calibration=other)
    assert not doubled.cached  # another calibration is another estimate
    capable = ~np.isnan(first.profile.drops)
    np.testing.assert_allclose(doubled.profile.drops[capable], 2 * first.profile.drops[capable])


def test_a_committed_cheap_file_answers_when_its_key_matches_and_is_ignored_otherwise(tmp_path, oracle, monkeypatch,
                                                                                       capsys):
    import accuracy.cheap_sensitivity as cheap
    from accuracy.cache import ResultCache

    measured = cheap.cached_cheap_profile(oracle, ResultCache(tmp_path / "first.sqlite"), directory=None)
    key = cheap.cheap_key(oracle, load_calibration(), None, T_GRID_S)
    path = cheap.write_cheap_file(measured, key, "lenet5", tmp_path / "cheap")
    assert json.loads(path.read_text())["key"] == json.loads(json.dumps(key))

    def no_measurement(*args, **kwargs):
        raise AssertionError("the cheap estimate was measured")

    monkeypatch.setattr(cheap, "cheap_profile", no_measurement)
    cache = ResultCache(tmp_path / "empty.sqlite")
    read = cheap.cached_cheap_profile(oracle, cache, directory=tmp_path / "cheap")
    assert read.cached and read.baseline == measured.baseline and read.cost["seconds"] == measured.cost["seconds"]
    np.testing.assert_array_equal(read.profile.drops, measured.profile.drops)
    assert cache.get(cheap.CACHE_KIND, key) is not None  # copied into the cache
    with pytest.raises(AssertionError, match="was measured"):  # no directory: the file is not read
        cheap.cached_cheap_profile(oracle, ResultCache(tmp_path / "other.sqlite"), directory=None)
    # measured under another key (here another grid): stale, so measured, not used
    other_grid = T_GRID_S[:-1]
    with pytest.raises(AssertionError, match="was measured"):
        cheap.cached_cheap_profile(oracle, ResultCache(tmp_path / "other.sqlite"), t_grid=other_grid,
                                   directory=tmp_path / "cheap")
    # not this format: a warning naming the file and the command that rewrites it, then measured
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AssertionError, match="was measured"):
        cheap.cached_cheap_profile(oracle, ResultCache(tmp_path / "third.sqlite"), directory=tmp_path / "cheap")
    err = capsys.readouterr().err
    assert f"ignoring {path}" in err and "cli.build_profiles --cheap --networks lenet5" in err
    path.write_text("{not json")
    assert cheap.read_cheap_file("lenet5", key, tmp_path / "cheap") is None
    assert f"ignoring {path}" in capsys.readouterr().err


def test_the_committed_cheap_estimates_are_current_for_every_zoo_network():
    # A fresh clone maps and trains from these files; a stale one would be measured again (minutes).
    from accuracy.cheap_sensitivity import CHEAP_DIR, cheap_key, read_cheap_file
    from accuracy.noise import load_noise
    from accuracy.profiles import plan_for
    from hw_model.system import load_system
    from workloads.registry import zoo_names

    system = load_system("alpine_like")
    noise = load_noise("lionheart", system.tiles.rows, system.tiles.cols)
    calibration = load_calibration()
    stale = []
    for name in zoo_names():
        spec = NetworkSpec.zoo(name)
        plan = plan_for(spec)
        oracle = AccuracyOracle(spec, noise, images=plan.images, seeds=plan.seeds)
        if read_cheap_file(name, cheap_key(oracle, calibration, None, T_GRID_S), CHEAP_DIR) is None:
            stale.append(name)
    assert not stale, f"rewrite with: python -m cli.build_profiles --cheap --networks {' '.join(stale)}"


def test_a_task_on_the_cheap_profile_reads_no_accuracy_artifact(tmp_path, monkeypatch):
    import accuracy.profiles
    from envs.tasks import build_task

    def no_artifact(*args, **kwargs):
        raise AssertionError("the accuracy artifact was read")

    monkeypatch.setattr(accuracy.profiles, "load_or_build", no_artifact)
    task = build_task("mlp", cache_path=tmp_path / "cache.sqlite", profile="cheap", artifact=False, progress=False)
    assert task.profile_source == "cheap" and task.profile_cost["seconds"] > 0
    mapping = task.cost.analog_capable.copy()
    t_s = 86400.0
    assert task.drop(mapping, t_s) == pytest.approx(float(np.maximum(task.profile.at(t_s), 0)[mapping].sum()))
    with pytest.raises(AssertionError, match="artifact was read"):
        build_task("mlp", cache_path=tmp_path / "cache.sqlite", profile="cheap", artifact=True, progress=False)
    with pytest.raises(ValueError, match="profile='cheap'"):
        build_task("mlp", cache_path=tmp_path / "cache.sqlite", profile="exact", artifact=False, progress=False)


def test_a_task_observes_the_estimator_it_is_given(tmp_path):
    from envs.tasks import build_task

    options = dict(cache_path=tmp_path / "cache.sqlite", profile="cheap", artifact=False, progress=False)
    default = build_task("mlp", **options)
    fisher = build_task("mlp", estimator="fisher", **options)
    assert default.profile_cost["estimator"] == "margin_flips" and fisher.profile_cost["estimator"] == "fisher"
    assert not np.array_equal(default.profile.at(86400.0), fisher.profile.at(86400.0))
    assert build_task("mlp", estimator="fisher", **options).profile_cost["cached"]  # its own cache row


def test_a_network_with_no_analog_capable_layer_has_an_all_nan_estimate(tmp_path, monkeypatch):
    from tests.networks import depthwise_only

    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "tests")
    torch.manual_seed(0)
    torch.save(depthwise_only(image_size=8).state_dict(), tmp_path / "depthwise.pt")
    spec = NetworkSpec.from_config({"name": "depthwise_only_test", "checkpoint": str(tmp_path / "depthwise.pt"),
                                    "model": {"_target_": "tests.networks.depthwise_only", "image_size": 8},
                                    "dataset": {"name": "digits", "validation_size": 150}})
    oracle = AccuracyOracle(spec, NoiseConfig(name="lionheart"), images=100, seeds=(0, 1))
    assert not any(layer.analog_capable for layer in oracle.table.layers)
    raw = measure(oracle, TIMES, ESTIMATORS)
    assert all(np.isnan(values).all() for values in raw.values.values())
    assert raw.cost["twin_passes"] == 0


def test_agreement_with_a_test_split_report_reads_the_report_and_the_stored_raw_scores(tmp_path, monkeypatch):
    import bench.bench_sensitivity as bench
    from reporting.sensitivity import SCHEMA

    monkeypatch.setattr(bench, "DOCS_SENSITIVITY", tmp_path)
    monkeypatch.setattr(bench, "PROJECT_ROOT", tmp_path)
    # 4 capable layers and one digital-only; raw scores rising with the layer index at every time
    raw = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [None, None, None], [3.0, 4.0, 5.0], [4.0, 5.0, 6.0]]
    row = {"network": "net", "raw": {"times_s": [1e2, 1e5, 1e8], "values": {e: raw for e in ESTIMATORS}}}
    layers = [{"name": n, "drop": [d, d]} for n, d in (("a", 0.1), ("b", 0.2), ("d", 0.4), ("e", 0.3))]
    report = {"schema": SCHEMA, "split": "test", "seeds": [100, 101], "images": 100,
              "times_s": [86400.0, 31536000.0], "layers": layers}
    (tmp_path / "net.json").write_text(json.dumps(report))
    identity = CalibrationFile("margin_flips", {e: Calibration(e, 1.0, 1.0) for e in ESTIMATORS})
    found = bench.test_profile_agreement(row, identity)
    assert found["split"] == "test" and found["seeds"] == [100, 101]
    for cell in found["margin_flips"].values():  # predicted order a < b < d < e, reported a < b < e < d
        assert cell["spearman"] == pytest.approx(0.8)
    assert bench.test_profile_agreement({**row, "network": "absent"}, identity) is None
    report["layers"] = layers[:3]  # another layer set: not comparable
    (tmp_path / "net.json").write_text(json.dumps(report))
    assert bench.test_profile_agreement(row, identity) is None


def test_keep_stored_checks_exactly_what_the_cheap_files_are_keyed_on(oracle):
    """bench_sensitivity --keep-stored refits the calibration and keeps the other networks' cheap
    files only if the part of it their key holds is unchanged: a refit that moves another
    estimator's scale leaves both keys alone; one that moves the default's changes both."""
    from accuracy.cheap_sensitivity import calibration_key, cheap_key

    committed = load_calibration()

    def scaled(which: str) -> CalibrationFile:
        return CalibrationFile(committed.default, {name: Calibration(name, c.scale * (2 if name == which else 1), c.power)
                                                   for name, c in committed.calibrations.items()},
                               committed.times_s, committed.competitors, committed.sequence_positions)

    other = next(name for name in ESTIMATORS if name != committed.default)
    for calibration, same in ((scaled(other), True), (scaled(committed.default), False)):
        assert (calibration_key(calibration) == calibration_key(committed)) is same
        assert (cheap_key(oracle, calibration, None, T_GRID_S) == cheap_key(oracle, committed, None, T_GRID_S)) is same
