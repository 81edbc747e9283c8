"""Engines: turn an ImageRequest into pixels and per-step states. They never write files.

Nothing heavy is imported here: the switch table reads the sampler names from schedulers.py
without pulling in torch."""
