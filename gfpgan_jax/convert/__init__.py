"""Official PyTorch state dicts <-> gfpgan-jax variables: one strict placement routine, each network's
naming rules."""
