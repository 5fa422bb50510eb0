"""howto3d: narrated how-to videos → one shared 3D space you can ask questions of (CLI, workspace, config)."""

__version__ = "0.1.0"
