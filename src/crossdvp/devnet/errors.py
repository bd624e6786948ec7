"""Errors of the devnet: one that was asked to start twice, and one that failed to start."""

from __future__ import annotations

from crossdvp.errors import CrossDvpError

__all__ = ["DevnetRunningError", "DevnetError"]


class DevnetError(CrossDvpError):
    """A devnet step failed; every process the failing `up` had started was stopped."""


class DevnetRunningError(DevnetError):
    """A devnet recorded in the directory still runs (or another `up` is starting one)."""
