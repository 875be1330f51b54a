"""Array operations shared by the networks (NHWC throughout)."""
