"""Deciders for the plugin tests: a second declaration of an existing type name."""

from __future__ import annotations

from dataclasses import replace

from fenced_client.domain.folders import FOLDERS

FOLDERS_AGAIN = replace(FOLDERS)
"""Another decider object for the type name 'folders': loading it must stop startup."""
NOT_A_DECIDER = {"type": "carts"}
