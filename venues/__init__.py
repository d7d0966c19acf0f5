"""The venue wing: one sub-package per venue (``venues/<name>/``), looked up by name.

Stages look a venue up with :func:`get_venue` (``frame.venue`` or the config's ``venue.name``) and use what the
:class:`venues.interface.Venue` it returns provides; no stage imports a venue package or names a venue. The known
venues are the sub-packages of this folder: adding a venue is adding a folder (README, "Adding a venue").
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from venues.interface import Venue

__all__ = ["UnknownVenue", "Venue", "default_name", "get_venue", "names"]


class UnknownVenue(ValueError):
    """A venue name that no ``venues/<name>/`` package answers to; the message lists the known ones."""


@functools.cache
def names() -> tuple[str, ...]:
    """The known venue names, sorted: the sub-packages of ``venues/``."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_")))


@functools.cache
def get_venue(name: str) -> Venue:
    """The venue called ``name``; :class:`UnknownVenue` (one line listing the known venues) for any other name."""
    if name not in names():
        raise UnknownVenue(f"unknown venue {name!r}; known venues: {', '.join(names())}")
    venue = importlib.import_module(f"venues.{name}").VENUE
    if not isinstance(venue, Venue) or venue.name != name:
        raise TypeError(f"venues.{name}.VENUE must be a venues.interface.Venue named {name!r}")
    return venue


@functools.cache
def default_name() -> str:
    """The venue a config without ``venue.name`` means: the one venue package that declares itself the default."""
    chosen = [n for n in names() if get_venue(n).default]
    if len(chosen) != 1:
        raise RuntimeError(f"exactly one venue must declare default = True; found {chosen or 'none'}")
    return chosen[0]
