"""``python -m howto3d`` = the ``howto3d`` command."""

from howto3d.cli import main

main()
