"""``dmchain version``: the product version and its key components."""

from __future__ import annotations

import argparse
import importlib.metadata

COMPONENTS = ("libp2p", "trio", "pynacl", "umbral-pre", "plyvel", "torch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's flags (none)."""


def get_component_versions() -> dict[str, str]:
    """Return installed versions of the key components ('missing' if absent)."""
    versions = {}
    for name in COMPONENTS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def run(args: argparse.Namespace) -> int:
    """Print the versions; always succeeds."""
    print(f"dmchain {importlib.metadata.version('dmchain')}")
    for name, version in get_component_versions().items():
        print(f"  {name} {version}")
    return 0
