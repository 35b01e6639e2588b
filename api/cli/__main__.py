"""``python -m api.cli``: the ``labwitness`` command."""

from api.cli import main

main()
