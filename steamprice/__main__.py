"""``python -m steamprice`` is the ``steamprice`` command."""

from steamprice import main

main()
