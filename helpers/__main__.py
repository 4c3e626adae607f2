"""``python -m helpers train | predict`` (and ``torchrun ... -m helpers train``): see helpers.cli."""

from .cli import main

if __name__ == "__main__":
    main()
