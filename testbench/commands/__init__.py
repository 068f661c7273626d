"""The ``vnetbench`` subcommands, one module each.

Each module has ``register(sub)``: it adds its parser to the subparsers ``sub`` and sets
``handler`` (``Callable[[argparse.Namespace], int]``, returning an exit code from
:mod:`testbench.cli_args`) as a default on it. To add a command, write its module and
name it in :data:`COMMANDS`.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = ("demo", "capture", "negotiate", "matrix", "bugs", "vhost_user")
"""Module names under ``testbench.commands``, in the order ``--help`` lists them."""
