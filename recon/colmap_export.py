"""A scene's shared frame as one COLMAP sparse model, for tools that read COLMAP (Gaussian splatting, NeRF
trainers, Meshroom, COLMAP's GUI). Output folder, COLMAP's usual layout::

    out/sparse/0/{cameras,images,points3D,rigs,frames}.bin   the model, written by pycolmap
    out/images/<video>/t<seconds>.<ext>                     the sampled frames SfM ran on, copied as they are

Built from the :class:`~recon.scene.SharedScene` (not by merging the videos' models again) so that the model
holds exactly what ``cameras --json`` lists: the frames a larger segment already registers are left out there,
and here too.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pycolmap

from recon.io import InputError, atomic_dir
from recon.scene import SharedScene


def image_name(video: str, time: float, suffix: str) -> str:
    """``video_00/t0012.500.jpg``: the video and the frame's time (seconds, ms precision: frames are ≥ 1 ms apart)."""
    return f"{video}/t{time:08.3f}{suffix}"


def _check_out(out: Path) -> None:
    """The folder is replaced as a whole: refuse one that holds anything but an earlier export."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "sparse").is_dir())):
        raise InputError(f"{out}: exists and is not a COLMAP export; give --out a new or empty folder")


def build(scene: SharedScene) -> pycolmap.Reconstruction:
    """The scene's registered frames, cameras and points as one reconstruction in the shared frame.

    One camera per camera of each video segment's model (one per shot, SfM intrinsics at the size of the sampled
    frames, as the images are). Each video's points stay separate points (alignment keeps no 3D–3D matches to
    merge them by); a point keeps the observations of the frames exported, and is left out below two (COLMAP's
    smallest track).
    """
    if not scene.frames:
        raise InputError(f"scene {scene.scene!r} has no registered frame in its shared frame; run `howto3d align`")
    rec = pycolmap.Reconstruction()
    camera_ids: dict[tuple[str, int, int], int] = {}
    tracks: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for image_id, f in enumerate(scene.frames, start=1):
        key = (f.video, f.segment, f.camera.camera_id)
        if key not in camera_ids:
            camera = pycolmap.Camera(f.camera.todict())
            camera.camera_id = camera_ids[key] = len(camera_ids) + 1
            rec.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=image_name(f.video, f.time, Path(f.name).suffix),
            keypoints=f.xy,
            camera_id=camera_ids[key],
            image_id=image_id,
        )
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(f.cam_from_world[:, :3]), f.cam_from_world[:, 3])
        rec.add_image_with_trivial_frame(image, pose)
        for idx, point in enumerate(f.point_index):
            tracks[int(point)].append((image_id, idx))
    for point, obs in sorted(tracks.items()):
        if len(obs) >= 2:
            track = pycolmap.Track()
            for image_id, idx in obs:
                track.add_element(image_id, idx)
            rec.add_point3D(scene.points[point], track, scene.colors[point])
    rec.update_point_3d_errors()  # the files carry each point's mean reprojection error, as COLMAP's own do
    return rec


def write_colmap(scene: SharedScene, frames_dirs: dict[str, Path], out: Path) -> pycolmap.Reconstruction:
    """Write the scene as a COLMAP model (``out/sparse/0``) and its frames (``out/images``); return the model.

    Poses are COLMAP's (= OpenCV's) world-to-camera: camera x right, y down, z forward. The world is the scene's
    shared frame: z up and origin at the points' median when ``align`` made it upright, in metres after
    ``howto3d scale`` (else in the reference video's arbitrary SfM units). ``frames_dirs``: each video's sampled
    frames folder (``recon.sampling``), whose images are copied, not decoded again. ``out`` is replaced whole.
    """
    out = Path(out)
    _check_out(out)
    rec = build(scene)
    with atomic_dir(out) as tmp:
        (tmp / "sparse" / "0").mkdir(parents=True)
        rec.write(tmp / "sparse" / "0")
        for f in scene.frames:
            source = Path(frames_dirs[f.video]) / "images" / f.name
            if not source.is_file():
                raise InputError(
                    f"{source}: sampled frame missing; sample and reconstruct the video again "
                    "(`howto3d reconstruct --force`)"
                )
            target = tmp / "images" / image_name(f.video, f.time, source.suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return rec
