"""Regenerate the README's generated tables from the commands that produce them.

    .venv/bin/python scripts/update_readme.py            # every table
    .venv/bin/python scripts/update_readme.py zoo cost   # only these

Each table sits between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` markers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.io import atomic_write  # noqa: E402

TABLES = {
    "zoo": [sys.executable, "-m", "cli.train_zoo", "--table"],
    "cost": [sys.executable, "-m", "cli.cost_summary"],
    "bench": [sys.executable, "-m", "bench.summarize"],
    "compare": [sys.executable, "-m", "bench.summarize", "--compare"],
    "sensitivity": [sys.executable, "-m", "bench.summarize", "--sensitivity"],
}


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise SystemExit(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, command in TABLES.items():
        if names and name not in names:
            continue
        output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        block = f"<!-- begin:{name} -->\n{output}\n<!-- end:{name} -->"
        pattern = re.compile(rf"<!-- begin:{name} -->.*?<!-- end:{name} -->", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- begin:{name} --> ... <!-- end:{name} --> markers")
        text = pattern.sub(lambda _: block, text)
    atomic_write(readme, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
