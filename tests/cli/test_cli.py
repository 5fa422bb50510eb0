"""The CLI contract: commands exist, workspaces are created and filled, errors are one readable line."""

from __future__ import annotations

import pytest


def test_help_lists_the_contract(cli):
    out = cli("--help")
    assert out.returncode == 0
    for cmd in (
        "init",
        "add",
        "reconstruct",
        "align",
        "train",
        "query",
        "cameras",
        "transfer",
        "run",
        "synth",
        "demo",
        "view",
        "overlay",
        "export",
        "crosstask",
        "actionness",
        "steps",
        "eval-steps",
        "discover",
        "groundedness",
        "localize",
        "serve",
    ):
        assert cmd in out.stdout, cmd


def test_init_add_and_clear_errors(cli, tmp_path, make_video):
    ws = tmp_path / "ws"
    assert cli("init", str(ws)).returncode == 0
    assert "num_frames = 80" in (ws / "howto3d.toml").read_text()
    make_video(tmp_path / "clip.mp4", n=5)
    (tmp_path / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    out = cli("add", str(ws), "--scene", "civic", str(tmp_path / "clip.mp4"))
    assert out.returncode == 0, out.stderr
    assert (ws / "scenes" / "civic" / "videos" / "clip.srt").is_file()
    for args, needle in [
        (("query", str(ws), "--scene", "golf", "where"), "no trained grounding model"),
        (("cameras", str(ws), "--scene", "golf", "--json"), "unknown scene 'golf'"),
        (("cameras", str(tmp_path / "nope"), "--scene", "x", "--json"), "not a howto3d workspace"),
        (("add", str(ws), "--scene", "civic", str(tmp_path / "missing.mp4")), "missing.mp4"),
        (("cameras", str(ws), "--scene", "civic", "--json"), "no reconstructed video"),
    ]:
        out = cli(*args)
        assert out.returncode != 0, args
        assert needle in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) <= 3, out.stderr


@pytest.mark.parametrize("text", ["[frames]\nnum_frames = 'many'\n"])
def test_bad_config_is_one_line(cli, tmp_path, text):
    ws = tmp_path / "ws"
    cli("init", str(ws))
    (ws / "howto3d.toml").write_text(text)
    out = cli("reconstruct", str(ws))
    assert out.returncode == 2 and "howto3d.toml" in out.stderr and "Traceback" not in out.stderr
