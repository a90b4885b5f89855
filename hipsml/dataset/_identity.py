"""Which recipe a dataset folder belongs to, and why a new version does not extend the last one.

A dataset folder holds the versions of one recipe: the same ``name``, the same surveys and
the same cutout geometry. Targets, splits, labels and carried columns may change from version
to version (that is what versions are for); another recipe needs another ``output.path``.
These are pure functions of the recipe and the stored attributes of the latest version.
"""

from __future__ import annotations

from typing import Any

from hipsml.dataset._recipe import Recipe, parse_recipe
from hipsml.errors import HipsmlError, OutputError

__all__ = ["first_difference", "check_same_recipe", "lineage_change"]

#: recipe sections that must match for a recipe to add versions to a dataset folder
IDENTITY_SECTIONS = ("surveys", "cutout")

_TARGET_SOURCES = ("file", "vizier", "tap", "grid")


def first_difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first place where two JSON-like values differ: ``(dotted path, old, new)``, or None.

    Examples
    --------
    >>> first_difference({"cutout": {"size": 32}}, {"cutout": {"size": 64}})
    ('cutout.size', 32, 64)
    >>> first_difference([1, 2], [1, 2]) is None
    True
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                return sub, old.get(key, "(absent)"), new.get(key, "(absent)")
            found = first_difference(old[key], new[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return path, f"{len(old)} entries", f"{len(new)} entries"
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if old == new else (path, old, new)


def _stored_recipe(attrs: dict[str, Any]) -> Recipe | None:
    """The recipe a version was built from (None when it cannot be read back)."""
    data = attrs.get("recipe")
    if not isinstance(data, dict):
        return None
    try:
        return parse_recipe(data, source="stored recipe")
    except HipsmlError:
        return None


def check_same_recipe(root: Any, recipe: Recipe, latest: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Refuse ``recipe`` when the dataset folder ``root`` holds another recipe's versions.

    Parameters
    ----------
    root : path
        The dataset folder (for the message).
    recipe : Recipe
        The recipe about to add a version.
    latest : dict
        The ``versions.json`` entry of the folder's latest version.
    attrs : dict
        The ``hipsml`` attributes of that version.

    Raises
    ------
    OutputError
        The name, the surveys or the cutout geometry differ (the message names the first difference).
    """
    where = f"output.path {root} holds v{latest['version']} of recipe {attrs.get('name')!r}"
    what = "give this recipe another output.path, or keep the recipe's name, surveys and cutout"
    if attrs.get("name") != recipe.name:
        raise OutputError(f"{where}, not of {recipe.name!r}; {what}")
    stored = _stored_recipe(attrs)
    if stored is None:
        return
    old, new = stored.canonical(), recipe.canonical()
    for section in IDENTITY_SECTIONS:
        found = first_difference(old.get(section), new.get(section), section)
        if found is not None:
            key, a, b = found
            raise OutputError(f"{where} with {key} {a!r}, this recipe has {b!r}; {what}")


def lineage_change(recipe: Recipe, attrs: dict[str, Any], version: int) -> str:
    """Why ``recipe`` cannot extend the version whose attributes are ``attrs`` by added targets (one line).

    Called when the lineage keys differ: the recipe beyond its target source, hipsml's version,
    or the surveys' identity (release, frame, order) or the pixel scale changed.
    """
    import hipsml

    stored = _stored_recipe(attrs)
    if stored is not None:
        old, new = stored.canonical(), recipe.canonical()
        for data in (old, new):
            for key in _TARGET_SOURCES:
                data["targets"].pop(key, None)
        found = first_difference(old, new)
        if found is not None:
            key, a, b = found
            return f"{key} changed since v{version} ({a!r} -> {b!r})"
    made_by = (attrs.get("software") or {}).get("hipsml")
    if made_by and made_by != hipsml.__version__:
        return f"v{version} was made by hipsml {made_by}, this is {hipsml.__version__}"
    return f"the surveys (release, frame or order) or the pixel scale changed since v{version}"
