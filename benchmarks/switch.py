"""How long `!switch` takes: a cold load from disk against a switch back to a cached model.

    OMP_NUM_THREADS=1 python benchmarks/switch.py [--repeats 5]

Two entries name the embedded model (so both loads read the same files); the session loads
one, then the other, then switches back and forth. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from invoke_shell.models.loader import load_model
from invoke_shell.models.registry import PACKAGE_ROOT, parse_registry
from invoke_shell.session.session import ModelSession

MODEL = PACKAGE_ROOT / "models" / "tiny_shapes" / "model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    config = "default: a\nmodels:\n" + "".join(f"  {n}:\n    path: {MODEL}\n" for n in ("a", "b"))
    registry = parse_registry(config, Path("bench.yaml"))
    cold, cached = [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            session = ModelSession(registry, lambda e: load_model(e, "cpu", "fp32"), Path(out), lambda s: None)
            t0 = time.perf_counter()
            session.load("a")
            t1 = time.perf_counter()
            session.load("b")
            cold += [t1 - t0, time.perf_counter() - t1]
            for name in ("a", "b"):  # both are in memory now: each switch is a cache hit
                t0 = time.perf_counter()
                session.load(name)
                cached.append(time.perf_counter() - t0)
            session.close()
    c, h = statistics.median(cold), statistics.median(cached)
    print(f"cold load (median of {len(cold)}): {c * 1000:.1f} ms")
    print(f"switch to a cached model (median of {len(cached)}): {h * 1000:.3f} ms")
    print(f"cached / cold: {h / c:.5f}")


if __name__ == "__main__":
    main()
