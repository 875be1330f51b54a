"""Restoring faces and whole photos with converted official weights: the restorer, detection,
parsing, alignment, background."""
