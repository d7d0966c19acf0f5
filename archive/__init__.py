"""The archive: what the pipeline landed, kept outside Kafka and the database, readable without either.

- :mod:`archive.export` (``mdpipe export``): event tables of the database -> Parquet, one directory per table and
  date, exact decimals, UTC timestamps (:mod:`archive.schema`); :mod:`archive.compare` reads an export back and
  counts the rows that differ from the database (``mdpipe demo --export``).
- :mod:`archive.raw` (``mdpipe archive raw``): the raw topics -> Parquet by gatherer and date, resumable.
- :mod:`archive.replay` (``mdpipe replay --from-archive``): a raw archive -> dedup -> the sink's rows, after Kafka's
  retention has passed.

Every location is a path or an fsspec URL (``s3://bucket/prefix``, ...): :mod:`archive.storage`.
"""
