"""The command lines behind infer.py and convert_weights.py: argument parsing and the loops over files."""
