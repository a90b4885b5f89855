"""The hipsml error hierarchy.

Every error hipsml raises on purpose is a :class:`HipsmlError`. Each specific error
also subclasses the builtin it most resembles, so ``except FileNotFoundError`` and
``except ValueError`` keep working for code that does not know about hipsml.

The ``hipsml`` command prints a :class:`HipsmlError` as one line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "HipsmlError",
    "InvalidLocationError",
    "SurveyNotFoundError",
    "PropertiesError",
    "TileNotFound",
    "TileDecodeError",
    "FetchError",
    "InputFileError",
    "InvalidInputError",
    "IndexOutOfRangeError",
    "OutputError",
    "RecipeError",
    "TargetsError",
    "DatasetNotFoundError",
    "DatasetError",
    "ResourceLimitError",
    "TrainingDivergedError",
    "MissingDependencyError",
]


class HipsmlError(Exception):
    """Base class of every error hipsml raises deliberately."""


class InvalidLocationError(HipsmlError, ValueError):
    """A survey location or URL is malformed or uses a scheme hipsml does not allow."""


class SurveyNotFoundError(HipsmlError, FileNotFoundError):
    """No HiPS survey exists at the given location (no directory, or no properties file)."""


class PropertiesError(HipsmlError, ValueError):
    """A HiPS ``properties`` file is malformed or lacks a required field."""


class TileNotFound(HipsmlError, FileNotFoundError):
    """A tile is absent from the survey (HTTP 404, not on disk, or outside the coverage MOC)."""


class TileDecodeError(HipsmlError, ValueError):
    """A tile's bytes could not be decoded as the FITS, PNG or JPEG image they claim to be."""


class FetchError(HipsmlError, ConnectionError):
    """A remote request failed for good (retries exhausted); the message names the URL and the reason."""


class InputFileError(HipsmlError, OSError):
    """A local input file cannot be read: not a regular file (a FIFO, a device), larger than
    hipsml accepts for that kind of file, or refused by the operating system."""


class InvalidInputError(HipsmlError, ValueError):
    """An argument to a hipsml function is out of range or of the wrong shape."""


class IndexOutOfRangeError(InvalidInputError, IndexError):
    """An index (of a cutout, a row) is outside the sequence it indexes; also an ``IndexError``."""


class OutputError(HipsmlError, OSError):
    """An output file could not be written (unwritable folder, a file where a folder should be)."""


class RecipeError(HipsmlError, ValueError):
    """A dataset recipe is malformed: the message names the recipe file and the field."""


class TargetsError(HipsmlError, ValueError):
    """A targets table is unreadable, empty, or has bad rows: the message names the file, column or row."""


class DatasetNotFoundError(HipsmlError, FileNotFoundError):
    """No hipsml dataset (or no such version of one) at the given path."""


class DatasetError(HipsmlError, ValueError):
    """A dataset on disk is damaged or contradicts itself: a malformed ``versions.json``, a chunk that
    is missing, resized, replaced or undecodable, or metadata at odds with the index; the message
    names the file, array, chunk or entry."""


class ResourceLimitError(HipsmlError, MemoryError):
    """A job would need more memory than its budget: the message gives the estimate and the budget,
    and names the parameter to shrink (or ``HIPSML_MEMORY_BUDGET`` to raise the budget)."""


class TrainingDivergedError(HipsmlError, FloatingPointError):
    """Training produced a non-finite loss or weight: the message names the epoch and the likely cause."""


class MissingDependencyError(HipsmlError, ImportError):
    """An optional package a function needs is not installed; the message says what to pip install."""
