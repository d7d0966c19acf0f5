"""ops: commands that span stages -- demo and whole-pipeline runs, verify, status, replay, book, per-hop latency.

The stages (ingest, dedup_stream, sink, venue_sim) stand on :mod:`mdpipe` and know nothing of this package; these
commands stand on the stages, so :mod:`mdpipe` (the ground floor) never imports them: ``mdpipe.cli`` names them
by module path and loads them on use.
"""
