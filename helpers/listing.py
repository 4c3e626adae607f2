"""Show the library's own code on the page, as a Markdown code block: monospace in JupyterLab, Colab and static
renderers (GitHub, nbconvert) alike, and dedented, so a method reads like a function. Used by the notebooks."""

from __future__ import annotations

import inspect
import textwrap

from IPython.display import Markdown


def source_listing(*objects: object) -> Markdown:
    """The source of each of ``objects`` (functions, methods, classes), dedented, in one Python code block."""
    code = "\n\n".join(textwrap.dedent(inspect.getsource(item)).rstrip() for item in objects)
    return Markdown(f"```python\n{code}\n```")
