"""``python -m helpers`` (and ``torchrun ... -m helpers``): the training command; see helpers.cli."""

from .cli import main

if __name__ == "__main__":
    main()
