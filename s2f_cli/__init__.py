"""The ``s2f`` command-line tool (a thin layer over the ``spike2former`` library)."""
