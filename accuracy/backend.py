"""Where exact accuracy evaluations run: serially, on a local process pool, or on a Ray cluster.

Why: every expensive step of the project (artifact builds, verification batches) is a set of
independent ``AccuracyOracle.evaluate(mapping, t)`` calls; run one by one they use one core.
:func:`evaluate_many` runs such a set on ``backend``:

* ``"serial"``: in this process, one after another (what ``AccuracyOracle.evaluate`` does).
* ``"local"``: a ``ProcessPoolExecutor`` of ``os.cpu_count()`` workers (forkserver context, so
  no worker inherits torch's threads; one torch thread per worker, since the workers already
  fill the cores).
* ``"ray"``: Ray tasks of one CPU each, on the cluster at ``RAY_ADDRESS`` or on a Ray instance
  started here. Ray is an optional extra (``make setup-ray``), imported only on this path.
* ``"auto"``: "ray" when ``RAY_ADDRESS`` is set and ray imports, else "local" when there is more
  than one CPU, else "serial"; and "serial" whenever fewer than ``MIN_PARALLEL_JOBS`` jobs miss
  the cache (starting workers would cost more than it saves).

Design, and why:

* A job (:class:`EvalJob`) is plain data: the network description as its config dict, the
  device configuration as a dict, the oracle options, the mapping as a "0101" string and t.
  It pickles cheaply and names itself in error messages.
* Only the driver (the caller's process) touches the SQLite cache: it reads every job's row
  first and sends only misses; it writes each result as it arrives, under the key
  ``AccuracyOracle.key`` gives, so nothing finished is lost when a later job fails and the rows
  are exactly those ``AccuracyOracle.evaluate`` writes. Workers only compute
  (``AccuracyOracle.compute_per_seed``) and check that their key (checkpoint hash, image count,
  device digest, aihwkit version, ...) equals the driver's, so a cluster node with another
  checkpoint or package version cannot put wrong rows under the driver's key.
* Each process keeps its oracles in a module-level dict keyed by the options digest (at most
  ``MAX_PROCESS_ORACLES``), so a worker loads the network and data once and reuses programmed
  layers across the chunks it runs. Jobs are sent in chunks of one network and options, in the
  caller's order (an artifact build lists the single-layer jobs layer by layer, so a chunk
  mostly reuses one programmed layer).
* Results do not depend on where a job runs: programming, drift and the fast path's noise are
  seeded per (seed, layer) and per evaluation (``accuracy.oracle``); ``tests/test_backend.py``
  checks serial, pool and Ray give identical numbers and rows.
* A chunk whose worker dies (``BrokenProcessPool``; Ray's ``WorkerCrashedError`` and kin) is
  retried once, job by job; a job whose worker dies again raises :class:`EvaluationError`
  naming the network, mapping and t. A dying local worker takes the whole pool down, so the
  chunks that were in flight are the suspects: the pool is recreated and each suspect job runs
  alone once, which tells the job that kills its worker from its innocent neighbours. A Python
  exception in a job is not retried (it would fail the same way): it is raised as an
  :class:`EvaluationError` naming the job.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sys
from collections import OrderedDict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm import tqdm

from accuracy.cache import ResultCache, digest
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle, AccuracyResult, mapping_bits
from common.units import human_time
from workloads.registry import TRUSTED_PACKAGES_ENV, NetworkSpec

BACKENDS = ("serial", "local", "ray", "auto")
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # set: "auto" uses the Ray cluster there (Ray's own variable)
WORKER_TORCH_THREADS = 1  # per pool/Ray worker: the workers together already fill the cores
MIN_PARALLEL_JOBS = 4  # "auto" runs fewer cache misses than this serially (worker start-up ~5 s)
MAX_PROCESS_ORACLES = 4  # oracles one process keeps (each holds a network, its data, programmed tiles)
CHUNKS_PER_WORKER = 4  # chunks per worker and network: balances the load, bounds the work a crash loses
MAX_CHUNK_JOBS = 8  # jobs per chunk at most: progress and crash losses stay fine-grained
MAX_ATTEMPTS = 2  # a job whose worker died runs once more, then is reported
RAY_WAIT_TIMEOUT_S = 1.0  # the driver's ray.wait poll: progress stays live, Ctrl-C is seen
RAY_CRASH_ERRORS = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError")
# A Ray instance started here (no RAY_ADDRESS) talks to itself on loopback. Ray rewrites "127.0.0.1"
# and "localhost" to the machine's outward address, but no other loopback address; on Linux all of
# 127.0.0.0/8 is loopback (elsewhere only 127.0.0.1 is, and Ray already keeps to it there).
LOCAL_RAY_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else None

JobHook = Callable[["EvalJob"], None]


class EvaluationError(RuntimeError):
    """An exact evaluation failed (its worker died twice, or it raised); names the job."""


class BackendError(RuntimeError):
    """The backend asked for cannot run here (an unknown name, or Ray not installed)."""


# ------------------------------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class OracleOptions:
    """Everything a process needs to build the oracle a job runs on, as plain data.

    ``network`` is the network description (``NetworkSpec.from_config`` input), ``noise`` the
    device configuration's fields; the rest are ``AccuracyOracle``'s options.
    """

    network: dict[str, Any]
    noise: dict[str, Any]
    images: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    batch_size: int = 500
    split: str = "validation"
    method: str = "fast"

    @classmethod
    def of(cls, spec: NetworkSpec, noise: NoiseConfig, *, images: int = 1000, seeds: Sequence[int] = (0, 1, 2),
           batch_size: int = 500, split: str = "validation", method: str = "fast") -> "OracleOptions":
        return cls(network=dataclasses.asdict(spec), noise=dataclasses.asdict(noise), images=int(images),
                   seeds=tuple(int(s) for s in seeds), batch_size=int(batch_size), split=split, method=method)

    @classmethod
    def from_oracle(cls, oracle: AccuracyOracle) -> "OracleOptions":
        """The options that rebuild ``oracle`` (one built from its spec's own data, not a ``data=`` override)."""
        return cls.of(oracle.spec, oracle.noise, images=oracle.images, seeds=oracle.seeds,
                      batch_size=oracle.batch_size, split=oracle.split, method=oracle.method)

    @property
    def name(self) -> str:
        return str(self.network.get("name", "?"))

    def digest(self) -> str:
        return digest(dataclasses.asdict(self))

    def build(self) -> AccuracyOracle:
        """A cacheless oracle (the driver alone reads and writes the cache)."""
        return AccuracyOracle(NetworkSpec.from_config(self.network), NoiseConfig(**self.noise), images=self.images,
                              seeds=self.seeds, batch_size=self.batch_size, split=self.split, method=self.method)


@dataclass(frozen=True)
class EvalJob:
    """One exact evaluation: ``mapping`` ("0101", one character per mappable layer) at ``t_s``."""

    options: OracleOptions
    mapping: str
    t_s: float

    @classmethod
    def of(cls, options: OracleOptions, mapping: Iterable, t_s: float) -> "EvalJob":
        return cls(options, mapping_bits(mapping), float(t_s))

    def bits(self) -> list[bool]:
        return [c == "1" for c in self.mapping]

    def describe(self) -> str:
        return f"network {self.options.name}, mapping {self.mapping}, t = {self.t_s:g} s ({human_time(self.t_s)})"


@dataclass(frozen=True)
class _Chunk:
    """Jobs of one options group sent to a worker together; ``keys`` are the driver's cache keys."""

    options: OracleOptions
    jobs: tuple[EvalJob, ...]
    keys: tuple[dict, ...]
    hook: JobHook | None = None
    attempt: int = 1
    trusted_packages: str | None = None  # the driver's AIMC_TRUSTED_PACKAGES when it sent the chunk

    def singles(self) -> list["_Chunk"]:
        """This chunk's jobs one per chunk, for the retry (so the job that fails is named)."""
        return [dataclasses.replace(self, jobs=(job,), keys=(key,), attempt=self.attempt + 1)
                for job, key in zip(self.jobs, self.keys)]


# ------------------------------------------------------------------------------------ workers

_ORACLES: OrderedDict[str, AccuracyOracle] = OrderedDict()  # this process's oracles, by options digest


def process_oracle(options: OracleOptions) -> AccuracyOracle:
    """This process's oracle for ``options`` (built on first use; least recently used dropped)."""
    key = options.digest()
    oracle = _ORACLES.get(key)
    if oracle is None:
        oracle = options.build()
        _ORACLES[key] = oracle
        while len(_ORACLES) > MAX_PROCESS_ORACLES:
            _ORACLES.popitem(last=False)
    _ORACLES.move_to_end(key)
    return oracle


def clear_process_oracles() -> None:
    """Forget this process's oracles (their networks, data and programmed tiles)."""
    _ORACLES.clear()


def _configure_worker(threads: int = WORKER_TORCH_THREADS) -> None:
    """Worker start-up: ``threads`` torch threads (idempotent; Ray calls it once per task)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _key_difference(mine: dict, theirs: dict) -> str:
    fields = sorted(name for name in set(mine) | set(theirs) if mine.get(name) != theirs.get(name))
    return ", ".join(f"{name}: driver {theirs.get(name)!r}, worker {mine.get(name)!r}" for name in fields)


def _trust_as_the_driver(trusted_packages: str | None) -> None:
    """Network builders are imported in the worker too, so it trusts exactly the packages the
    driver trusted when it sent the chunk (a pool worker or Ray node may have started with
    another environment; ``workloads.registry`` reads the variable at each build)."""
    if trusted_packages is None:
        os.environ.pop(TRUSTED_PACKAGES_ENV, None)
    else:
        os.environ[TRUSTED_PACKAGES_ENV] = trusted_packages


def run_chunk(chunk: _Chunk) -> list[tuple[float, ...]]:
    """Worker side: the per-seed accuracies of a chunk's jobs, in order (no cache access)."""
    _trust_as_the_driver(chunk.trusted_packages)
    oracle = process_oracle(chunk.options)
    out = []
    for job, expected in zip(chunk.jobs, chunk.keys):
        try:
            if chunk.hook is not None:
                chunk.hook(job)
            key = oracle.key(job.bits(), job.t_s)
            if key != expected:
                raise EvaluationError(f"this worker ({os.uname().nodename}) is not set up like the driver: "
                                      f"{_key_difference(key, expected)}")
            out.append(oracle.compute_per_seed(job.bits(), job.t_s))
        except Exception as error:  # named here, where the job is known; not retried (deterministic)
            raise EvaluationError(f"exact evaluation of {job.describe()} failed: "
                                  f"{type(error).__name__}: {error}") from None
    return out


def _run_chunk_in_ray(chunk: _Chunk) -> list[tuple[float, ...]]:
    _configure_worker()
    return run_chunk(chunk)


# ------------------------------------------------------------------------------------- driver


def ray_available() -> bool:
    """Whether ``import ray`` works (Ray is the optional extra of requirements-ray.txt)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """The backend "auto" stands for here (see the module docstring); others are checked and kept."""
    if backend not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "ray" and not ray_available():
        raise BackendError("backend ray needs Ray, an optional extra: install it with `make setup-ray` "
                           "(or use backend local or serial)")
    if backend != "auto":
        return backend
    if os.environ.get(RAY_ADDRESS_ENV) and ray_available():
        return "ray"
    return "local" if (os.cpu_count() or 1) > 1 else "serial"


def _baseline(oracle: AccuracyOracle, cache: ResultCache | None) -> float:
    """The all-digital accuracy, from the cache when stored (the row ``AccuracyOracle.baseline`` writes)."""
    key = oracle.baseline_key()
    stored = cache.get("baseline", key) if cache is not None else None
    if stored is not None:
        return float(stored["accuracy"])
    value = oracle.baseline()
    if cache is not None:
        cache.put("baseline", key, {"accuracy": value})
    return value


def _chunks(options: OracleOptions, jobs: list[EvalJob], keys: list[dict], workers: int,
            hook: JobHook | None) -> list[_Chunk]:
    size = max(1, min(MAX_CHUNK_JOBS, math.ceil(len(jobs) / (workers * CHUNKS_PER_WORKER))))
    trusted = os.environ.get(TRUSTED_PACKAGES_ENV)
    return [_Chunk(options, tuple(jobs[k:k + size]), tuple(keys[k:k + size]), hook, trusted_packages=trusted)
            for k in range(0, len(jobs), size)]


def evaluate_many(jobs: Iterable[EvalJob], backend: str = "auto", cache: ResultCache | None = None,
                  progress: bool = True, *, desc: str = "exact evaluations", max_workers: int | None = None,
                  before_job: JobHook | None = None) -> list[AccuracyResult]:
    """The results of ``jobs`` in their order, each equal to ``AccuracyOracle.evaluate``'s.

    ``cache`` is read first (only misses are computed; a job listed twice is computed once) and
    written as results arrive, by this process only. ``max_workers``: local pool size (default
    ``os.cpu_count()``). ``before_job(job)`` is called in the worker before each computed job
    (instrumentation and fault-injection tests; it must pickle). Raises :class:`EvaluationError`
    naming the job that failed; a ``MappingError`` for an invalid mapping before anything runs.
    """
    jobs = list(jobs)
    chosen = resolve_backend(backend)
    results: list[AccuracyResult | None] = [None] * len(jobs)
    groups: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(job.options.digest(), []).append(index)
    baselines: dict[str, float] = {}  # options digest -> all-digital accuracy
    image_counts: dict[str, int] = {}  # options digest -> images the oracle uses
    waiting: dict[str, list[int]] = {}  # key digest -> indices of the jobs it answers
    misses: dict[str, tuple[list[EvalJob], list[dict]]] = {}  # options digest -> (jobs, keys)
    for group, indices in groups.items():
        options = jobs[indices[0]].options
        oracle = process_oracle(options)  # the driver's copy: validation, keys and the baseline
        baseline = baselines[group] = _baseline(oracle, cache)
        image_counts[group] = oracle.images
        for index in indices:
            job = jobs[index]
            bits = job.bits()
            key = oracle.key(bits, job.t_s)  # validates the mapping and t: errors before any work
            if not any(bits):
                results[index] = AccuracyResult.of([baseline] * len(oracle.seeds), baseline, job.t_s,
                                                   oracle.images, options.method)
                continue
            key_digest = digest(key)
            if key_digest in waiting:
                waiting[key_digest].append(index)
                continue
            stored = cache.get("accuracy", key) if cache is not None else None
            if stored is not None:
                results[index] = AccuracyResult.of(stored["per_seed"], baseline, job.t_s, oracle.images,
                                                   options.method)
                continue
            waiting[key_digest] = [index]
            group_jobs, group_keys = misses.setdefault(group, ([], []))
            group_jobs.append(job)
            group_keys.append(key)
    count = sum(len(group_jobs) for group_jobs, _ in misses.values())
    if backend == "auto" and count < MIN_PARALLEL_JOBS:
        chosen = "serial"
    bar = tqdm(total=len(jobs), initial=len(jobs) - sum(len(v) for v in waiting.values()), desc=desc,
               unit="eval", disable=not progress, dynamic_ncols=True)
    bar.set_postfix(backend=chosen, computed=count)

    def record(chunk: _Chunk, per_seeds: list[tuple[float, ...]]) -> None:
        """A finished chunk: cache rows first (so they survive a later failure), then the results."""
        for job, key, per_seed in zip(chunk.jobs, chunk.keys, per_seeds):
            if cache is not None:
                cache.put("accuracy", key, {"per_seed": list(per_seed)})
            group = job.options.digest()
            for index in waiting[digest(key)]:
                results[index] = AccuracyResult.of(per_seed, baselines[group], jobs[index].t_s,
                                                   image_counts[group], job.options.method)
                bar.update(1)

    try:
        if chosen == "serial":
            for group_jobs, group_keys in misses.values():
                for chunk in _chunks(group_jobs[0].options, group_jobs, group_keys, 1, before_job):
                    record(chunk, run_chunk(chunk))
        elif count:
            workers = max_workers or os.cpu_count() or 1
            if chosen == "ray":
                workers = _ray_workers()
            chunks = [chunk for group_jobs, group_keys in misses.values()
                      for chunk in _chunks(group_jobs[0].options, group_jobs, group_keys, workers, before_job)]
            if chosen == "local":
                _run_local(chunks, record, workers)
            else:
                _run_ray(chunks, record)
    finally:
        bar.close()
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- local pool

_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where available (workers fork from a clean server that has imported this module
    once, so starting or restarting a pool is quick and no worker inherits torch's thread pool),
    else spawn. Never fork: the driver may have torch threads running."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__])  # effective only before the server starts
        return context
    return multiprocessing.get_context("spawn")


def local_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` (kept between calls so workers keep their oracles)."""
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        shutdown_local_pool()
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_configure_worker,
                                    initargs=(WORKER_TORCH_THREADS,))
        _POOL_WORKERS = workers
    return _POOL


def shutdown_local_pool() -> None:
    """Stop the local pool's workers (a new pool starts on the next local run)."""
    global _POOL, _POOL_WORKERS
    if _POOL is not None:
        pool, _POOL, _POOL_WORKERS = _POOL, None, 0
        pool.shutdown(wait=True, cancel_futures=True)


def _crash_message(job: EvalJob, why: str) -> str:
    return (f"exact evaluation of {job.describe()} failed: its worker died twice ({why}); results finished "
            "before it are in the cache")


def _run_local(chunks: list[_Chunk], record: Callable[[_Chunk, list], None], workers: int) -> None:
    """Run ``chunks`` on the local pool, ``workers`` at a time, recording each as it finishes.

    At most ``workers`` chunks are in flight, so when a worker dies (and takes the pool down) the
    suspects are known: the pool is recreated and every suspect job runs alone once (a second
    death is then its own) before the other chunks continue.
    """
    queue: deque[_Chunk] = deque(chunks)
    alone: deque[_Chunk] = deque()  # single-job retries, run one at a time
    in_flight: dict[Future, _Chunk] = {}
    try:
        while queue or alone or in_flight:
            pool = local_pool(workers)

            def submit(source: deque[_Chunk]) -> bool:
                """Start the next chunk of ``source``; False if the pool broke since the last wait
                (a worker died: the chunk goes back, and the futures in flight say which one)."""
                chunk = source.popleft()
                try:
                    in_flight[pool.submit(run_chunk, chunk)] = chunk
                    return True
                except BrokenProcessPool:
                    source.appendleft(chunk)
                    return False

            if alone:  # a suspect runs with nothing beside it
                if not in_flight:
                    submit(alone)
            else:
                while queue and len(in_flight) < workers and submit(queue):
                    pass
            if not in_flight:  # broken with nothing in flight to name the culprit: a fresh pool
                shutdown_local_pool()
                continue
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken: list[_Chunk] = []
            for future in done:
                chunk = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    record(chunk, future.result())
                elif isinstance(error, BrokenProcessPool):
                    broken.append(chunk)
                else:
                    raise error
            if not broken:
                continue
            broken += list(in_flight.values())  # the pool is gone: every chunk in flight failed with it
            in_flight.clear()
            shutdown_local_pool()
            for chunk in broken:
                if chunk.attempt >= MAX_ATTEMPTS:
                    raise EvaluationError(_crash_message(
                        chunk.jobs[0], "the local pool broke while it ran alone; a worker that cannot start, such as "
                        "one re-importing a script without an `if __name__ == \"__main__\":` guard, looks the same"))
                alone.extend(chunk.singles())
    except BaseException:
        shutdown_local_pool()  # cancels what has not started; finished results are already recorded
        raise


# ---------------------------------------------------------------------------------------- Ray

_RAY_TASK = None


def _ensure_ray() -> Any:
    """Ray, connected: to ``RAY_ADDRESS`` when set, else a Ray instance started here."""
    import ray

    if not ray.is_initialized():
        address = os.environ.get(RAY_ADDRESS_ENV)
        if address:
            ray.init(address=address)
        else:
            ray.init(**local_ray_options())
    return ray


def local_ray_options(num_cpus: int | None = None) -> dict[str, Any]:
    """``ray.init`` options for a Ray instance on this machine alone: its cores, no dashboard, loopback."""
    options: dict[str, Any] = {"num_cpus": num_cpus or os.cpu_count() or 1, "include_dashboard": False}
    if LOCAL_RAY_NODE_IP:
        options["_node_ip_address"] = LOCAL_RAY_NODE_IP
    return options


def _ray_workers() -> int:
    ray = _ensure_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _run_ray(chunks: list[_Chunk], record: Callable[[_Chunk, list], None]) -> None:
    """Run ``chunks`` as Ray tasks (one CPU each); the driver ``ray.wait``s, records as they finish,
    and retries a chunk whose worker died once, job by job."""
    global _RAY_TASK
    ray = _ensure_ray()
    if _RAY_TASK is None:
        _RAY_TASK = ray.remote(num_cpus=1, max_retries=0)(_run_chunk_in_ray)
    crash_types = tuple(getattr(ray.exceptions, name) for name in RAY_CRASH_ERRORS
                        if hasattr(ray.exceptions, name))
    refs: dict[Any, _Chunk] = {_RAY_TASK.remote(chunk): chunk for chunk in chunks}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=RAY_WAIT_TIMEOUT_S)
            for ref in done:
                chunk = refs.pop(ref)
                try:
                    per_seeds = ray.get(ref)
                except crash_types as error:
                    if chunk.attempt >= MAX_ATTEMPTS:
                        raise EvaluationError(_crash_message(chunk.jobs[0], type(error).__name__)) from None
                    refs.update({_RAY_TASK.remote(single): single for single in chunk.singles()})
                    continue
                except ray.exceptions.RayTaskError as error:
                    cause = error.cause if getattr(error, "cause", None) is not None else error
                    raise EvaluationError(str(cause)) from None
                record(chunk, per_seeds)
    except BaseException:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone: nothing to cancel
                pass
        raise
