"""placeholder"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def cmd_simulate(args: argparse.Namespace) -> int:
    return 0
