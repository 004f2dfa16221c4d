"""``python -m s2f_cli`` (also how torchrun launches the tool)."""

from .app import main

main()
