"""pybpf's command lines: ``pybpf`` (cli.main) and ``pybpf-conformance-plugin``."""

from __future__ import annotations

import argparse

from pybpf.errors import PybpfError


def _budget(text: str) -> int:
    from pybpf.vm.budget import parse_budget

    try:
        return parse_budget(text, "--budget")
    except PybpfError as err:  # argparse reports it as one usage line
        raise argparse.ArgumentTypeError(str(err)) from None


def add_budget_option(parser: argparse.ArgumentParser) -> None:
    """``--budget N`` (None when not given: the caller falls back to budget_from_env)."""
    from pybpf.vm.budget import BUDGET_ENV, DEFAULT_BUDGET

    parser.add_argument("--budget", type=_budget, metavar="N",
                        help=f"stop after N instructions (default: ${BUDGET_ENV}, else "
                             f"{DEFAULT_BUDGET:_})")  # fmt: skip
