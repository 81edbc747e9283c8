"""Engines: turn a GenerationRequest into pixels. They never write files."""

from invoke_shell.engines.generate import Engine, GenerationResult, StepState

__all__ = ["Engine", "GenerationResult", "StepState"]
