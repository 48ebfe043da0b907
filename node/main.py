"""The ``carbonledger`` console script: node verbs here, everything else in the
client's CLI. (``client`` must never import ``node``, so the dispatch lives on
the node side.)"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["NODE_COMMANDS", "main"]

NODE_COMMANDS = ("init", "serve")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in NODE_COMMANDS:
        from node.cli import main as node_main

        return node_main(args)
    from client.cli import main as client_main

    if not args or args[0] in ("-h", "--help"):
        from node.cli import build_parser

        node_help = build_parser().format_help().split("\n", 1)[1]
        print("node commands (init, serve):" + node_help.split("positional arguments:", 1)[-1])
    return client_main(args)


if __name__ == "__main__":
    sys.exit(main())
