"""YAML as hipsml reads it: safe (never runs code), with YAML 1.2's numbers.

PyYAML follows YAML 1.1, whose floats need a dot: ``1e-3`` and ``1e+30`` are read as the strings
``'1e-3'`` and ``'1e+30'``, which then fail validation far from their cause. :func:`load_yaml`
reads them as floats, as YAML 1.2 (and every other YAML reader a user meets) does.

Examples
--------
>>> load_yaml("learning_rate: 1e-3\\nsigma: 2.5\\nname: 1e3x\\nepochs: 10")
{'learning_rate': 0.001, 'sigma': 2.5, 'name': '1e3x', 'epochs': 10}
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["load_yaml"]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 floats (``1e-3``, ``+1E6``, ``.5``, ``1.``)."""


_Loader.yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)
for _first in "-+0123456789.":
    resolvers = _Loader.yaml_implicit_resolvers.setdefault(_first, [])
    # a plain integer stays an integer: YAML's int resolver is tried first
    resolvers.append(("tag:yaml.org,2002:float", _FLOAT_12))


def load_yaml(text: str | bytes) -> Any:
    """Parse YAML ``text`` (str, or bytes as read) safely, numbers as YAML 1.2 reads them (``1e-3`` is a float).

    Raises
    ------
    yaml.YAMLError
        Malformed YAML (callers turn it into their own one-line error naming the file).
    """
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no tag that runs code
