"""Per-video reconstruction and cross-video alignment (the first stage of howto3d)."""
