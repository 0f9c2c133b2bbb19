"""Loading a saved MaskablePPO policy (``.zip``) without running code from the file.

stable-baselines3 saves a model as a zip holding a ``data`` JSON member and PyTorch ``.pth``
members. Entries of ``data`` that are not plain JSON are stored as ``{":type:": ...,
":serialized:": <base64 cloudpickle>, <plain fields>}`` and ``MaskablePPO.load`` unpickles them,
so a crafted policy file runs arbitrary code the moment it is loaded. ``load_policy`` closes that.

What is not trusted -- everything in the file:

* ``data`` is read here with ``zipfile`` + ``json`` (no unpickling). Every entry that carries
  ``:serialized:`` is handed to SB3 as a ``custom_objects`` replacement, so SB3 never unpickles
  anything. The replacements are built from this project's code, never from the file:
  ``observation_space``/``action_space`` from ``envs.mapping_env.FEATURES`` and ``Discrete(2)``;
  ``policy_class`` = ``MaskableActorCriticPolicy``; ``rollout_buffer_class`` =
  ``MaskableRolloutBuffer``; ``learning_rate``/``lr_schedule``/``clip_range``/``clip_range_vf`` =
  constant (or linear) schedules rebuilt from the numbers in the entry's plain-JSON fields or the
  plain ``learning_rate`` (MaskablePPO's default, with a warning, when no number is recoverable);
  ``_last_obs``/``_last_episode_starts``/``_last_original_obs`` = None (SB3 resets the environment
  before training); ``ep_info_buffer``/``ep_success_buffer`` = empty deques. Any other serialized
  entry is refused (``PolicyFileError``), as are entries SB3 never saves (``env`` would make SB3
  build an environment named by the file, which imports a module of the file's choosing). SB3
  only deserialises top-level entries; a ``:serialized:`` nested in a plain dict stays a string.
* The file's plain-JSON metadata of the spaces (shape, dtype, bounds, number of actions) must
  match this environment's; a mismatch is reported before SB3 is called.
* Plain JSON entries (numbers, strings, lists, dicts: hyper-parameters, ``policy_kwargs`` such
  as ``net_arch``) are data; SB3 copies them onto the model. JSON cannot name code to run; a
  value of the wrong type fails during construction and is reported as ``PolicyFileError``.
* The ``.pth`` members (``policy.pth``, ``policy.optimizer.pth``, ``pytorch_variables.pth``) are
  read by SB3 2.9.2's ``load_from_zip_file`` with ``torch.load(weights_only=True)``: torch's
  restricted unpickler accepts tensors and plain containers only, so they cannot run code either
  (``tests/test_untrusted.py`` checks this with a crafted ``policy.pth``).
* ``system_info.txt`` and ``_stable_baselines3_version`` are never read.

The file is read once into memory and SB3 loads that same copy, so it cannot change between the
checks and the load. Trusted: the installed packages (stable-baselines3, sb3-contrib, torch,
gymnasium) and the caller's arguments (``env``, ``load_kwargs``).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import re
import warnings
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule

from envs.mapping_env import FEATURES

SERIALIZED = ":serialized:"  # SB3's marker of a cloudpickled entry in ``data``
TYPE_FIELD = ":type:"
DATA_MEMBER = "data"
MAX_DATA_BYTES = 16 * 2 ** 20  # a real ``data`` member is a few kB; refuse to inflate anything huge
ACTIONS = ("digital", "analog")  # LayerMappingEnv's Discrete(2)
POLICY_MODULE = MaskableActorCriticPolicy.__module__
NOT_OURS = "the file was not written by train.py"
# BaseAlgorithm._excluded_save_params: SB3 never writes these, and loading copies data onto the model.
NEVER_SAVED = ("policy", "device", "env", "replay_buffer", "rollout_buffer", "_vec_normalize_env",
               "_logger", "_custom_logger")
REQUIRED = ("policy_class", "observation_space", "action_space")
_NUMBER = r"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_CONSTANT_REPR = re.compile(rf"ConstantSchedule\(val=({_NUMBER})\)")
_LINEAR_REPR = re.compile(rf"LinearSchedule\(start=({_NUMBER}), end=({_NUMBER}), end_fraction=({_NUMBER})\)")


class PolicyFileError(ValueError):
    """A policy file is not one train.py wrote, or does not fit this environment; the message says which."""


def observation_space() -> spaces.Box:
    """LayerMappingEnv's observation space, built from FEATURES without building any task."""
    low = np.array([feature[1] for feature in FEATURES], np.float32)
    high = np.array([feature[2] for feature in FEATURES], np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def action_space() -> spaces.Discrete:
    return spaces.Discrete(len(ACTIONS))


def load_policy(path: str | Path, env: Any = None, device: str = "cpu", **load_kwargs: Any) -> MaskablePPO:
    """``MaskablePPO.load`` of ``path`` with nothing in the file unpickled (see the module docstring)."""
    if "custom_objects" in load_kwargs:
        raise TypeError("load_policy builds custom_objects itself; do not pass them")
    path = Path(path)
    raw = _read_bytes(path)
    data = _read_data(path, raw)
    _check_entries(path, data)
    _check_spaces(path, data)
    custom_objects = _replacements(path, data)
    unknown = [key for key, value in data.items() if _is_serialized(value) and key not in custom_objects]
    if unknown:
        raise PolicyFileError(f"{path}: data entry {unknown[0]!r} holds a pickled Python object, which this "
                              f"loader neither unpickles nor knows how to replace; {NOT_OURS}")
    try:
        return MaskablePPO.load(io.BytesIO(raw), env=env, device=device, custom_objects=custom_objects,
                                **load_kwargs)
    except Exception as error:  # SB3 and torch raise many types for files that do not fit
        lines = str(error).strip().splitlines()
        raise PolicyFileError(f"{path}: stable-baselines3 cannot load it: {type(error).__name__}: "
                              f"{lines[0] if lines else 'no details'}") from error


# --- reading the file ------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise PolicyFileError(f"policy file {path} does not exist")
    try:
        return path.read_bytes()
    except OSError as error:
        raise PolicyFileError(f"{path}: cannot read it ({error})") from error


def _read_data(path: Path, raw: bytes) -> dict[str, Any]:
    """The ``data`` member parsed as JSON, without deserialising any entry."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            if DATA_MEMBER not in archive.namelist():
                raise PolicyFileError(f"{path}: the zip has no '{DATA_MEMBER}' member, so it is not a "
                                      f"stable-baselines3 model; {NOT_OURS}")
            if archive.getinfo(DATA_MEMBER).file_size > MAX_DATA_BYTES:
                raise PolicyFileError(f"{path}: its '{DATA_MEMBER}' member is larger than "
                                      f"{MAX_DATA_BYTES} bytes; {NOT_OURS}")
            text = archive.read(DATA_MEMBER)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            OSError, zlib.error) as error:
        raise PolicyFileError(f"{path} is not a readable zip file ({type(error).__name__}: {error}); "
                              "a policy is the .zip train.py saves") from error
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PolicyFileError(f"{path}: its '{DATA_MEMBER}' member is not JSON ({error}); {NOT_OURS}") from error
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: its '{DATA_MEMBER}' member is a JSON {type(data).__name__}, "
                              f"not an object; {NOT_OURS}")
    return data


def _is_serialized(value: Any) -> bool:
    return isinstance(value, dict) and SERIALIZED in value


# --- checks --------------------------------------------------------------------------------------

def _check_entries(path: Path, data: dict[str, Any]) -> None:
    """Refuse entries SB3 never writes, missing required ones, and a policy class train.py does not use."""
    for key in NEVER_SAVED:
        if key in data:
            raise PolicyFileError(f"{path}: data entry {key!r} is never written by stable-baselines3 and "
                                  f"loading would copy it onto the model; {NOT_OURS}")
    for key in REQUIRED:
        if key not in data:
            raise PolicyFileError(f"{path}: data has no {key!r} entry; {NOT_OURS}")
    module = data["policy_class"].get("__module__") if isinstance(data["policy_class"], dict) else None
    if module is not None and module != POLICY_MODULE:
        raise PolicyFileError(f"{path}: the policy class comes from {module!r}; this loader rebuilds only "
                              f"{POLICY_MODULE}.MaskableActorCriticPolicy (the policy train.py trains)")


def _check_spaces(path: Path, data: dict[str, Any]) -> None:
    """Compare the spaces' plain-JSON metadata (when present) with this environment's."""
    obs, act = observation_space(), action_space()
    meta = data["observation_space"] if isinstance(data["observation_space"], dict) else {}
    kind = meta.get(TYPE_FIELD)
    if isinstance(kind, str) and not kind.endswith(".Box'>"):
        raise PolicyFileError(f"{path}: policy expects observations of type {kind}; this environment has a Box")
    shape = meta.get("_shape")
    if isinstance(shape, list) and tuple(shape) != obs.shape:
        raise PolicyFileError(f"{path}: policy expects observations of shape {tuple(shape)}; this environment "
                              f"has {obs.shape} (envs.mapping_env.FEATURES)")
    dtype = meta.get("dtype")
    if isinstance(dtype, str) and dtype != str(obs.dtype):
        raise PolicyFileError(f"{path}: policy expects observations of dtype {dtype}; this environment has {obs.dtype}")
    for bound, expected in (("low", obs.low), ("high", obs.high)):
        stored = _numbers(meta.get(bound))
        if stored is not None and len(stored) == len(expected) and not np.allclose(stored, expected):
            index = int(np.flatnonzero(~np.isclose(stored, expected))[0])
            raise PolicyFileError(f"{path}: policy expects observation feature {index} ({FEATURES[index][0]}) "
                                  f"to have {bound} bound {stored[index]:g}; this environment has {expected[index]:g}")
    meta = data["action_space"] if isinstance(data["action_space"], dict) else {}
    kind = meta.get(TYPE_FIELD)
    if isinstance(kind, str) and not kind.endswith(".Discrete'>"):
        raise PolicyFileError(f"{path}: policy expects actions of type {kind}; this environment has Discrete({act.n})")
    count = _number(meta.get("n"))
    if count is not None and count != act.n:
        raise PolicyFileError(f"{path}: policy expects Discrete({count:g}) actions; this environment has "
                              f"Discrete({act.n}) ({'/'.join(ACTIONS)})")


def _number(value: Any) -> float | None:
    """A finite number from a JSON number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(_NUMBER, value):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numbers(value: Any) -> np.ndarray | None:
    """The numbers of a numpy array's printed form ("[ 0. -1.  1.]"); None if it is not one."""
    if not isinstance(value, str):
        return None
    found = re.findall(_NUMBER, value)
    return np.array([float(item) for item in found]) if found else None


# --- replacements ----------------------------------------------------------------------------

def _linear(values: list[float | None]) -> LinearSchedule | None:
    start, end, end_fraction = values
    if start is None or end is None or end_fraction is None:
        return None
    return LinearSchedule(start, end, end_fraction)


def _schedule(value: Any) -> float | LinearSchedule | None:
    """A constant or linear schedule rebuilt from plain metadata; None when none is recoverable."""
    number = _number(value)
    if number is not None or not isinstance(value, dict):
        return number
    constant = _number(value.get("val"))  # a ConstantSchedule's fields
    if constant is not None:
        return constant
    linear = _linear([_number(value.get(field)) for field in ("start", "end", "end_fraction")])
    if linear is not None:
        return linear
    text = value.get("value_schedule")  # a FloatSchedule's field holds the wrapped schedule's repr
    if isinstance(text, str):
        if match := _CONSTANT_REPR.fullmatch(text.strip()):
            return _number(match.group(1))
        if match := _LINEAR_REPR.fullmatch(text.strip()):
            return _linear([_number(group) for group in match.groups()])
    return None


def _default(name: str) -> Any:
    return inspect.signature(MaskablePPO.__init__).parameters[name].default


def _schedule_or_default(path: Path, key: str, *candidates: Any) -> Any:
    for candidate in candidates:
        schedule = _schedule(candidate)
        if schedule is not None:
            return schedule
    fallback = _default(key)
    warnings.warn(f"{path}: no number for {key} in the file's plain metadata; using MaskablePPO's default "
                  f"{fallback!r} (it matters only if you continue training)", stacklevel=3)
    return fallback


def _replacements(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Safe values, built here, for every entry of a real file that SB3 would otherwise unpickle.

    The spaces and classes are replaced even when the file stores them as plain JSON.
    """
    window = data.get("_stats_window_size")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        window = _default("stats_window_size")
    objects: dict[str, Any] = {
        "observation_space": observation_space(),
        "action_space": action_space(),
        "policy_class": MaskableActorCriticPolicy,
        "rollout_buffer_class": MaskableRolloutBuffer,
        "_last_obs": None,
        "_last_episode_starts": None,
        "_last_original_obs": None,
        "ep_info_buffer": deque(maxlen=window),
        "ep_success_buffer": deque(maxlen=window),
    }
    if "learning_rate" in data or "lr_schedule" in data:
        learning_rate = _schedule_or_default(path, "learning_rate", data.get("learning_rate"),
                                             data.get("lr_schedule"))
        objects["learning_rate"] = learning_rate
        objects["lr_schedule"] = FloatSchedule(learning_rate)  # SB3 rebuilds it from learning_rate anyway
    if "clip_range" in data:
        objects["clip_range"] = _schedule_or_default(path, "clip_range", data["clip_range"])
    if data.get("clip_range_vf") is not None:  # None (the default) disables value clipping; kept as it is
        objects["clip_range_vf"] = _schedule_or_default(path, "clip_range_vf", data["clip_range_vf"])
    return objects

