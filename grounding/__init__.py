"""Language grounding: narrations → voxels of the shared 3D space, and text queries → 3D heatmaps."""
