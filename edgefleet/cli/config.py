"""Placeholder command group: registers nothing until its owner implements it."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    del subparsers
