"""``python -m autopersist`` is the ``autopersist`` command."""

from autopersist.cli import main

if __name__ == "__main__":
    main(prog_name="autopersist")
