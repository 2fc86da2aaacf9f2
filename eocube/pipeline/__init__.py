"""Runs: the main job over the embedded synthetic city (grown stage by stage by later issues)."""

from __future__ import annotations

from eocube.pipeline.demo import run_demo

__all__ = ["run_demo"]
