"""Per-layer drift sensitivity of a network, as JSON and a bar chart (``reporting.sensitivity``).

    python -m cli.sensitivity network=gpt                       # 1 day and 1 year, 4 test chips
    python -m cli.sensitivity network=resnet8 'times_s=[3600,86400]' seeds=[100,101] out=/tmp/s

Writes ``<out>/<network>.json`` and ``<out>/<network>.png`` (default ``docs/sensitivity``) and
prints which layers dominate.
"""

from __future__ import annotations

from pathlib import Path

from accuracy.backend import BACKENDS, BackendError, EvaluationError
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfigError, load_noise
from accuracy.profiles import DEFAULT_CACHE
from cli.plumbing import UsageError, compose_or_exit, run_main
from common.paths import PROJECT_ROOT
from common.runtime import use_fast_malloc
from reporting import sensitivity
from workloads.datasets import DatasetError
from workloads.registry import NetworkError, NetworkSpec


def main(argv: list[str] | None = None) -> int:
    cfg = compose_or_exit("sensitivity", argv)

    def run() -> int:
        times = [float(t) for t in cfg.times_s]
        seeds = [int(s) for s in cfg.seeds]
        if not times or min(times) <= 0:
            raise UsageError(f"times_s must list positive drift times in seconds, got {times}")
        if not seeds or len(set(seeds)) != len(seeds):
            raise UsageError(f"seeds must list distinct programming seeds, got {seeds}")
        if int(cfg.images) < 1:
            raise UsageError(f"images must be at least 1, got {cfg.images}")
        if cfg.split not in ("validation", "test"):
            raise UsageError(f"split must be validation or test, got {cfg.split!r}")
        if cfg.backend not in BACKENDS:
            raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
        spec = NetworkSpec.from_config(cfg.network)
        noise = load_noise(cfg.noise)
        out = Path(cfg.out)
        out = out if out.is_absolute() else PROJECT_ROOT / out
        doc = sensitivity.measure(spec, noise, times_s=times, images=int(cfg.images), seeds=seeds,
                                  split=str(cfg.split), backend=str(cfg.backend),
                                  cache=ResultCache(cfg.cache or DEFAULT_CACHE))
        json_path, png_path = sensitivity.write(doc, out)
        print("\n".join(sensitivity.summary_lines(doc)))
        print(f"wrote {json_path} and {png_path}")
        return 0

    return run_main(run, (UsageError, NetworkError, NoiseConfigError, DatasetError, BackendError,
                          EvaluationError, ValueError))


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
