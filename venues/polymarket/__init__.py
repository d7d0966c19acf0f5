"""Polymarket (CLOB ``market`` WebSocket channel, Gamma/CLOB REST discovery): everything of this venue in one folder.

Modules, pure logic unless said otherwise:

- :mod:`venues.polymarket.wire`: msgspec structs of the ``market`` channel messages, the subscribe/update frames, the
  client PING cadence and the connection/asset limits (every protocol fact with its source or marked a guess);
- :mod:`venues.polymarket.numbers`: exact number checks and canonical spellings (``".48"`` == ``"0.480"``);
- :mod:`venues.polymarket.keys`: the event key of each message (identity of copies from several gatherers);
- :mod:`venues.polymarket.book`: one token's book with the venue's replace-a-level semantics;
- :mod:`venues.polymarket.normalise`: RawFrame -> shared :mod:`schemas.events` types (market = token id);
- :mod:`venues.polymarket.session`: the sans-I/O client session of one connection;
- :mod:`venues.polymarket.discovery`: Gamma ``/markets/keyset`` and CLOB ``/markets`` listing parsers and paging;
- :mod:`venues.polymarket.emulator`: the emulator's Polymarket profile (frames from the emulator's ground truth);
- :mod:`venues.polymarket.verify`: that same translation replayed for ``mdpipe verify`` (what the venue sent);
- :mod:`venues.polymarket.venue`: :class:`~venues.polymarket.venue.Polymarket`, what the stages look up as ``VENUE``.
"""

NAME = "polymarket"

try:  # the venue wing's interface (venues/interface.py) arrives with its branch; until it is merged, no VENUE
    from venues.interface import Venue as _Venue  # noqa: F401
except ImportError:  # pragma: no cover - only before the merge
    VENUE = None
else:
    from venues.polymarket.venue import Polymarket

    VENUE = Polymarket()
