"""Entry point of ``python -m helpers.train`` and ``torchrun -m helpers.train``; the code lives in helpers.cli.

Never ``import helpers.train``: importing a submodule binds it as an attribute of its package, so
``helpers.train`` would stop being the ``train`` function that helpers/__init__.py exports. ``python -m``
runs this file as ``__main__`` without that binding.
"""

from .cli import main

if __name__ == "__main__":
    main()
