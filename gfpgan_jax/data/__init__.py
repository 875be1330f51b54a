"""Training data: sources of ground-truth faces, facial component boxes, and the sharded batch pipeline."""
