"""Show a shared scene and its grounding heatmaps: GUI, headless screenshots, AR-style overlays, timelines, export.

The source only shows its results as figures; these modules make them inspectable. They consume a
:class:`recon.scene.SharedScene` and plain arrays (a heatmap is ``(centers, scores, voxel_size)``), never the
grounding or temporal internals, so any stage's output can be drawn without loading its model.
"""
