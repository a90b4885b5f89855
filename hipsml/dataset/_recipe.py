"""Recipes: the declarative description of a training set, validated at field level.

A recipe is YAML (read safely by :func:`hipsml._yaml.load_yaml`: it never runs code; ``1e-3`` is a
number), validated by pydantic
models whose unknown keys are errors with a "did you mean". Every error is one line that
names the recipe file and the field: ``demo.yaml: cutout.sizee: unknown key; did you mean
'size'?``. Relative paths in a recipe (targets file, local surveys, output, MOC) are
relative to the recipe's folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from hipsml._files import user_path
from hipsml._suggest import did_you_mean
from hipsml._yaml import load_yaml
from hipsml.errors import RecipeError

__all__ = ["Recipe", "load_recipe", "parse_recipe", "did_you_mean"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SurveyEntry(_Section):
    """One survey: its channels are appended in recipe order."""

    location: str = Field(min_length=1)
    name: str | None = None
    order: int | Literal["auto"] = "auto"
    #: options of :func:`hipsml.open_survey` (retries, timeout, deadline, cache_dir, ...); they do
    #: not change what is read, so they are not part of the dataset's identity
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("order")
    @classmethod
    def _order_range(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 29:
            raise ValueError(f"HiPS order must be 0..29 or 'auto', got {v}")
        return v


class Columns(_Section):
    """Names of the targets' columns (``id`` and ``label`` optional)."""

    ra: str = "ra"
    dec: str = "dec"
    id: str | None = None
    label: str | None = None


class VizierQuery(_Section):
    """A VizieR catalogue query (online; its result is saved beside the dataset)."""

    catalog: str = Field(min_length=1)
    columns: list[str] = Field(default_factory=list)
    filters: dict[str, str] = Field(default_factory=dict)
    row_limit: int = Field(default=100_000, ge=1, le=50_000_000)


class TapQuery(_Section):
    """An ADQL query to a TAP service (online; its result is saved beside the dataset)."""

    url: str = Field(pattern=r"^https?://")
    query: str = Field(min_length=1)


class GridTargets(_Section):
    """Every HEALPix cell centre at ``order`` in a disc, or in a MOC file."""

    order: int = Field(ge=0, le=20)
    center: tuple[float, float] | None = None
    radius: float | None = Field(default=None, gt=0, le=180)
    moc: str | None = None

    @model_validator(mode="after")
    def _one_region(self) -> GridTargets:
        disc = self.center is not None or self.radius is not None
        if disc and self.moc is not None:
            raise ValueError("give center + radius or moc, not both")
        if self.moc is None and (self.center is None or self.radius is None):
            raise ValueError("a grid needs center and radius (degrees), or moc")
        if self.center is not None and not (math.isfinite(self.center[0]) and -90 <= self.center[1] <= 90):
            raise ValueError(f"center must be (ra, dec) in degrees with |dec| <= 90, got {list(self.center)}")
        return self


class Targets(_Section):
    """Where the targets come from: exactly one of ``file``, ``vizier``, ``tap``, ``grid``."""

    file: str | None = None
    vizier: VizierQuery | None = None
    tap: TapQuery | None = None
    grid: GridTargets | None = None
    columns: Columns = Field(default_factory=Columns)
    frame: Literal["icrs", "fk5", "galactic"] = "icrs"
    carry: list[str] = Field(default_factory=list)
    drop_uncovered: bool = False
    #: drop targets whose fraction of pixels holding data is below this in some channel: one number
    #: for every channel, or a mapping from channel or survey name to a number (0..1)
    min_coverage: float | dict[str, float] | None = None

    @field_validator("min_coverage", mode="before")
    @classmethod
    def _number_or_mapping(cls, v: Any) -> Any:
        def number(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        if v is None or number(v):
            return v
        if isinstance(v, dict) and all(isinstance(k, str) and number(x) for k, x in v.items()):
            return v
        raise ValueError(f"give a number in [0, 1], or a mapping from channel or survey name to one, got {v!r}")

    @field_validator("min_coverage")
    @classmethod
    def _fractions(cls, v: float | dict[str, float] | None) -> float | dict[str, float] | None:
        values = v.values() if isinstance(v, dict) else [] if v is None else [v]
        for f in values:
            if not (math.isfinite(f) and 0.0 <= f <= 1.0):
                raise ValueError(f"a coverage fraction must be in [0, 1], got {f}")
        if isinstance(v, dict) and not v:
            raise ValueError("give a number, or a mapping from channel or survey name to a number")
        return v

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Targets:
        given = [k for k in ("file", "vizier", "tap", "grid") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of file, vizier, tap, grid" + (f" (got {', '.join(given)})" if given else "")
            )
        if len(set(self.carry)) != len(self.carry):
            raise ValueError("carry lists a column twice")
        return self


class CutoutSection(_Section):
    """Cutout geometry: ``pixel_scale`` (arcsec) or ``fov`` (arcsec), rotation in degrees or a column."""

    size: int = Field(default=64, ge=1, le=4096)
    pixel_scale: float | None = Field(default=None, gt=0)
    fov: float | None = Field(default=None, gt=0)
    projection: Literal["TAN", "SIN"] = "TAN"
    interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear"
    rotation: float | str = 0.0

    @model_validator(mode="after")
    def _scale(self) -> CutoutSection:
        if self.pixel_scale is not None and self.fov is not None:
            raise ValueError("give pixel_scale or fov, not both")
        if isinstance(self.rotation, float) and not math.isfinite(self.rotation):
            raise ValueError("rotation must be finite degrees or a column name")
        return self


class Splits(_Section):
    """Reproducible splits: a hash of (salt, key) bucketed by cumulative fractions."""

    scheme: Literal["healpix", "id"] = "healpix"
    order: int = Field(default=8, ge=0, le=29)
    salt: str = "hipsml"
    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("name at least one split")
        if len(v) > 127:
            raise ValueError("at most 127 splits")
        for name, f in v.items():
            if not name or not (0.0 <= f <= 1.0) or not math.isfinite(f):
                raise ValueError(f"fraction of split {name!r} must be in [0, 1], got {f}")
        total = math.fsum(v.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"fractions must sum to 1, they sum to {total:.6g}")
        return v


class Output(_Section):
    """Where the dataset goes and how its images are stored."""

    path: str = Field(min_length=1)
    dtype: Literal["float32", "float16"] = "float32"
    compressor: Literal["lz4", "zstd", "none"] = "lz4"
    chunk_mb: float = Field(default=2.0, gt=0, le=64)


class Compute(_Section):
    """Where the work runs: local threads (default), a LocalCluster of processes, or a cluster."""

    workers: int = Field(default=2, ge=1, le=4096)
    threads_per_worker: int = Field(default=1, ge=1, le=256)
    scheduler: str = "threads"
    slurm: dict[str, Any] = Field(default_factory=dict)
    targets_per_unit: int = Field(default=4096, ge=1, le=1_000_000)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        if v in ("threads", "processes", "sciserver", "slurm") or re.match(r"^(tcp|tls|inproc|ucx)://\S+$", v):
            return v
        raise ValueError(
            f"scheduler must be threads, processes, sciserver, slurm or an address like tcp://host:8786, got {v!r}"
            + did_you_mean(v, ["threads", "processes", "sciserver", "slurm"])
        )


class Recipe(_Section):
    """A dataset recipe (see ``recipes/demo.yaml`` for an annotated example).

    ``base_dir`` (not a recipe key) is the folder relative paths are resolved against.
    """

    name: str
    description: str = ""
    surveys: list[SurveyEntry] = Field(min_length=1)
    targets: Targets
    cutout: CutoutSection = Field(default_factory=CutoutSection)
    splits: Splits = Field(default_factory=Splits)
    output: Output
    compute: Compute = Field(default_factory=Compute)
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_a_word(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "name must be letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit"
            )
        return v

    def resolve(self, path: str) -> str:
        """A location from the recipe: URLs unchanged, local paths relative to the recipe's folder."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
            return path
        p = user_path(path, what="path")
        return os.path.normpath(p if p.is_absolute() else Path(self.base_dir) / p)

    def canonical(self) -> dict[str, Any]:
        """The recipe as plain JSON data, less what does not define the dataset's content.

        Left out: ``description``, ``compute``, ``output.path``, and where the surveys and the targets file
        are (the dataset's hash covers the surveys' identity and the targets' content, so a
        mirror and the original archive give the same version).
        """
        data = self.model_dump(mode="json", exclude={"description", "compute", "base_dir"})
        data["output"].pop("path", None)
        for survey in data["surveys"]:
            survey.pop("location", None)
            survey.pop("options", None)
        data["targets"].pop("file", None)
        if data["targets"].get("min_coverage") is None:
            data["targets"].pop("min_coverage", None)  # absent: the hash of recipes without it is unchanged
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _model_type(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_type(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``X | None`` or ``list[X]``, else ``annotation``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_type(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _format_error(err: ErrorDetails) -> str:
    loc = tuple(err.get("loc", ()))
    where = ".".join(str(p) for p in loc) or "(top level)"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        holder = _model_at(Recipe, loc[:-1])
        fields = [f for f in (holder.model_fields if holder else {}) if f != "base_dir"]
        return f"{where}: unknown key{did_you_mean(str(loc[-1]), fields)}"
    if kind == "missing":
        return f"{where}: required, missing"
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        value = err.get("input")
        expected = (err.get("ctx") or {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", str(expected))
        return f"{where}: {value!r} is not one of {', '.join(choices)}{did_you_mean(str(value), choices)}"
    return f"{where}: {msg}"


def parse_recipe(data: Any, *, source: str = "recipe", base_dir: str | os.PathLike[str] = ".") -> Recipe:
    """Validate recipe data (a mapping, as YAML gives) into a :class:`Recipe`.

    Raises
    ------
    RecipeError
        One line naming ``source`` and the first bad field (and how many more there are).
    """
    if not isinstance(data, dict):
        raise RecipeError(
            f"{source}: a recipe is a mapping of keys (name, surveys, targets, ...), got {type(data).__name__}"
        )
    if "base_dir" in data:
        raise RecipeError(f"{source}: base_dir: unknown key")
    try:
        return Recipe.model_validate({**data, "base_dir": os.fspath(base_dir)})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecipeError(f"{source}: {_format_error(errors[0])}{more}") from None


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a YAML recipe file; relative paths in it are relative to its folder.

    Examples
    --------
    >>> recipe = load_recipe("recipes/demo.yaml")
    >>> recipe.name, recipe.cutout.size, [survey.name for survey in recipe.surveys]
    ('demo', 64, ['g', 'r', 'i', 'radio'])
    """
    p = user_path(path, what="recipe")
    name = p.name
    try:
        if not p.is_file():
            raise RecipeError(f"{os.fspath(p)}: no such recipe file")
        if p.stat().st_size > 16 * 2**20:
            raise RecipeError(f"{os.fspath(p)}: larger than 16 MiB; is this a recipe?")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{os.fspath(p)}: not UTF-8 text") from None
    except OSError as exc:
        raise RecipeError(f"{os.fspath(p)}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{name}:{where}: not valid YAML ({problem})") from None
    return parse_recipe(data, source=name, base_dir=p.resolve().parent)
