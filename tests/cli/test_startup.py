"""Cold start: what a fresh ``howto3d`` process imports, checked without timing.

A cold ``howto3d query`` is dominated by imports; each heavy library (Open3D, pycolmap, scikit-learn, ...) costs
0.2–1.1 s. These tests fail as soon as one of them creeps back into the CLI module or the query path, e.g. a
module-level import in a command adapter, which no timing test on a shared machine would catch reliably.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = {
    "open3d",
    "pycolmap",
    "sklearn",
    "networkx",
    "matplotlib",
    "transformers",
    "scipy",
    "ray",
    "fastapi",
    "uvicorn",
    "numba",
    "av",
    "torch",
}
"""Top-level packages no command should pay for before it runs (torch: only commands that train or run the
temporal models; queries run BERT in NumPy)."""

_PROBE = textwrap.dedent("""
    import json, sys
    heavy = set(json.loads(sys.argv[1]))
    args = json.loads(sys.argv[2])
    if args is None:
        import howto3d.cli
        code = 0
    else:
        sys.argv = ["howto3d", *args]
        from howto3d.cli import main
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
    loaded = sorted({m.split(".")[0] for m in sys.modules} & heavy)
    print("IMPORTS " + json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
""")


def imports_of(args: list[str] | None) -> tuple[dict, str]:
    """Run ``howto3d ARGS`` (or only ``import howto3d.cli`` for ``None``) in a fresh interpreter: the heavy
    packages it imported, its exit code, and its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(HEAVY)), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTS ")]
    assert line, proc.stderr[-2000:]
    return json.loads(line[-1][len("IMPORTS ") :]), proc.stdout


def test_cli_module_and_light_commands_import_nothing_heavy(tmp_path):
    assert imports_of(None)[0]["loaded"] == []
    result, _ = imports_of(["init", str(tmp_path / "ws")])
    assert result == {"code": 0, "loaded": []}
    assert (tmp_path / "ws" / "howto3d.toml").is_file()
    result, out = imports_of(["--help"])
    assert result == {"code": 0, "loaded": []} and "crosstask" in out and "query" in out


@pytest.mark.slow
def test_cold_query_imports_nothing_heavy_and_answers_like_in_process(trained_ws):
    """Queries run BERT in NumPy: no torch (1.4 s of the 1.9-s cold query it used to be), nor any other."""
    from howto3d import scenes

    ws, scene, _ = trained_ws
    text = "where is the dipstick"
    result, out = imports_of(["query", str(ws.root), "--scene", scene, text, "--json"])
    assert result == {"code": 0, "loaded": []}, result
    expected = scenes.grounder(ws).query(scene, [text])[0]
    answer = json.loads(out)
    assert answer["point"] == pytest.approx(expected["point"], abs=1e-5)
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-5)
