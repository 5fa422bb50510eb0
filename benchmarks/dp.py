"""DP benchmark: temporal.dp (numba) vs the previous NumPy code vs CrossTask's Cython ``dp.pyx``, in one run.

    python benchmarks/dp.py [--quick] [--crosstask PATH]

Same random costs for all three (float32 values, as CrossTask takes them), median of repeats. A1 =
``align_one`` (CrossTask ``exactly_one=True``), A2 = ``align_contiguous`` (``exactly_one=False`` with a
background cost). Checks: our labels equal the previous implementation's (ties included), and our optimal
cost equals CrossTask's. ``--crosstask`` is a CrossTask checkout, a bare git folder of it, or its ``dp.pyx``
(default: $CROSSTASK, else a clone from GitHub); it is compiled with Cython from PyPI in a temporary folder,
and the column is skipped with the reason when that is not possible. Also prints numba's first-call cost.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder leads sys.path and would shadow packages of the same names.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from temporal.dp import align_contiguous, align_one  # noqa: E402

console = Console(width=180)
ROOT = Path(__file__).resolve().parents[1]
SIZES = [(3000, 10), (30000, 20)]
BG_COST = 0.5
_SETUP = """
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(ext_modules=cythonize([Extension("ct_dp", ["ct_dp.pyx"], include_dirs=[np.get_include()])],
                            compiler_directives={"language_level": 2}, quiet=True),
      script_args=["build_ext", "--inplace", "-q"])
"""


def previous_implementation():
    """The NumPy solvers this module replaced: the oracle kept in the tests (one copy of that code)."""
    path = ROOT / "tests" / "temporal" / "test_temporal_dp.py"
    spec = importlib.util.spec_from_file_location("_dp_oracle", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ref_align_one, mod.ref_align_contiguous


def _crosstask_source(arg: str | None, tmp: Path) -> Path:
    src = Path(arg or os.environ.get("CROSSTASK", "") or tmp / "CrossTask")
    if not src.exists():
        subprocess.run(
            ["git", "clone", "-q", "--depth", "1", "https://github.com/DmZhukov/CrossTask", str(src)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    if src.is_file():
        return src
    if (src / "dp.pyx").exists():
        return src / "dp.pyx"
    out = tmp / "dp.pyx"  # a bare git folder (no work tree)
    out.write_bytes(
        subprocess.run(["git", "--git-dir", str(src), "show", "HEAD:dp.pyx"], check=True, capture_output=True).stdout
    )
    return out


def build_crosstask(arg: str | None, tmp: Path):
    """CrossTask's ``dp(Y, C, exactly_one, bg_cost)`` compiled here, or the one-line reason it is not."""
    try:
        pyx = _crosstask_source(arg, tmp)
    except (subprocess.SubprocessError, OSError) as e:
        return None, (
            f"CrossTask column skipped: could not clone or read its dp.pyx ({type(e).__name__}); pass --crosstask PATH"
        )
    build = tmp / "build"
    build.mkdir()
    (build / "ct_dp.pyx").write_bytes(pyx.read_bytes())
    env = dict(os.environ)
    try:
        import Cython  # noqa: F401
    except ImportError:
        pkgs = tmp / "cython"
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(pkgs), "cython"],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            return None, "Cython not installable from PyPI here: " + (r.stderr.strip().splitlines() or ["?"])[-1]
        env["PYTHONPATH"] = os.pathsep.join([str(pkgs), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", _SETUP], cwd=build, env=env, capture_output=True, text=True)
    so = sorted(build.glob("ct_dp*.so")) + sorted(build.glob("ct_dp*.pyd"))
    if r.returncode or not so:
        return None, "building dp.pyx failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    loader = importlib.machinery.ExtensionFileLoader("ct_dp", str(so[0]))
    spec = importlib.util.spec_from_file_location("ct_dp", str(so[0]), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod.dp, f"CrossTask {pyx.name} built with Cython"


def median_ms(solvers: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) ms per solver; solvers take turns every round so a busy machine slows them alike.

    CPU time (all single-threaded here) is what to compare on a shared machine, wall time on a quiet one.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in solvers}
    for _ in range(repeats):
        for name, f in solvers.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    return {
        name: (1e3 * statistics.median(w for w, _ in ts), 1e3 * statistics.median(c for _, c in ts))
        for name, ts in times.items()
    }


def one_cost(C: np.ndarray, steps: np.ndarray) -> float:
    """A1 objective: the chosen clip's cost for every step."""
    return float(C[steps, np.arange(C.shape[1])].sum())


def run_cost(C: np.ndarray, y: np.ndarray, bg: float) -> float:
    """A2 objective: step costs on labelled clips, ``bg`` on the others."""
    fg = y > 0
    return float(C[np.flatnonzero(fg), y[fg] - 1].sum() + bg * (~fg).sum())


def labels_from_onehot(Y: np.ndarray) -> np.ndarray:
    """CrossTask's one-hot ``Y[T, K]`` as our labels ``y[T]`` (0 = background)."""
    return np.where(Y.any(1), Y.argmax(1) + 1, 0)


def compile_cost() -> str:
    """numba import + first calls in fresh processes: compiling (empty cache), then loading the cache."""
    code = (
        "import time, numpy as np; t = time.perf_counter(); import temporal.dp as d; "
        "d.align_one(np.zeros((3, 2))); d.align_contiguous(np.zeros((3, 2))); "
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(2)
        ]
    return (
        f"first call in a fresh process (numba import + both solvers): {runs[0]:.2f} s compiling, "
        f"{runs[1]:.2f} s from numba's disk cache"
    )


def rows(T: int, K: int, repeats: int, ct_dp, prev_one, prev_contiguous) -> list[list[str]]:
    """Time A1 and A2 on one random cost matrix with all three solvers and check their answers agree."""
    C32 = np.random.default_rng(T + K).random((T, K), dtype=np.float32)
    C = C32.astype(np.float64)
    Y = np.zeros((T, K), dtype=np.float32)  # CrossTask writes its one-hot labels here
    out = []
    for name, ours, prev, exactly_one, cost in [
        (
            "A1",
            lambda: align_one(C, maximize=False),
            lambda: prev_one(C, maximize=False),
            True,
            lambda s: one_cost(C, s),
        ),
        (
            "A2",
            lambda: align_contiguous(C, bg_cost=BG_COST),
            lambda: prev_contiguous(C, bg_cost=BG_COST),
            False,
            lambda y: run_cost(C, y, BG_COST),
        ),
    ]:
        got = ours()

        def ct(exactly_one=exactly_one):
            ct_dp(Y, C32, exactly_one, 0.0 if exactly_one else BG_COST)

        # the previous code on its own: its memory churn would slow whatever runs right after it
        ms = median_ms({"previous": prev}, max(3, repeats // 3))
        ms |= median_ms({"ours": ours} | ({"ct": ct} if ct_dp else {}), repeats)
        (ours_w, ours_c), (prev_w, _) = ms["ours"], ms["previous"]
        row = [name, str(T), str(K), f"{ours_w:.3f}", f"{prev_w:.2f}"]
        if ct_dp is None:
            row += ["-", f"{prev_w / ours_w:.0f}x", "-", f"{ours_c:.3f}", "-", "-"]
            same_ct = "-"
        else:
            ct()
            ct_out = Y.argmax(0) if exactly_one else labels_from_onehot(Y)
            same = np.isclose(cost(got), cost(ct_out), rtol=1e-9, atol=0.0)
            ident = "identical" if np.array_equal(got, ct_out) else "differ"
            same_ct = f"{'yes' if same else 'NO'}, labels {ident}"
            ct_w, ct_c = ms["ct"]
            row += [
                f"{ct_w:.2f}",
                f"{prev_w / ours_w:.0f}x",
                f"{ct_w / ours_w:.1f}x",
                f"{ours_c:.3f}",
                f"{ct_c:.2f}",
                f"{ct_c / ours_c:.1f}x",
            ]
        out.append(row + ["yes" if np.array_equal(got, prev()) else "NO", same_ct])
    return out


def main(quick: bool, crosstask: str | None) -> None:
    prev_one, prev_contiguous = previous_implementation()
    repeats = (9, 3) if quick else (45, 15)  # (T = 3000, T = 30000)
    align_one(np.zeros((3, 2)))  # compile (or load from numba's cache) outside the timings
    align_contiguous(np.zeros((3, 2)))
    with tempfile.TemporaryDirectory() as tmp:
        ct_dp, note = build_crosstask(crosstask, Path(tmp))
        console.print(note)
        table = Table(
            "DP",
            "T",
            "K",
            "ours ms",
            "previous ms",
            "CrossTask ms",
            "÷ previous",
            "÷ CrossTask",
            "ours CPU ms",
            "CrossTask CPU ms",
            "÷ CrossTask CPU",
            "labels = previous",
            "cost = CrossTask",
            title="Order-constrained DP, median time per video (wall, then CPU)",
        )
        for (T, K), n in zip(SIZES, repeats, strict=True):
            for row in rows(T, K, n, ct_dp, prev_one, prev_contiguous):
                table.add_row(*row)
        console.print(table)
    console.print(compile_cost())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repeats.")
    parser.add_argument(
        "--crosstask",
        help="CrossTask checkout, bare git folder or dp.pyx (default: $CROSSTASK, else a clone from GitHub).",
    )
    args = parser.parse_args()
    main(args.quick, args.crosstask)
