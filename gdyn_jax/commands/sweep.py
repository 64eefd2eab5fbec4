"""`gdyn sweep`: placeholder until its issue lands."""

import argparse

HELP = "(not available yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    raise ValueError("gdyn sweep is not available yet")
