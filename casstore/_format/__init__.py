"""Everything that decides bytes at rest or in Event History, one module per format.

In the order of docs/formats.md, which is the order of the data path
(payload -> digest -> object -> backend, and the claim left in history):

* :mod:`~casstore._format.keys`: key layout v1 (locations, escaping, the
  ``_a``/``_h`` markers, the ``_casstore/`` housekeeping prefix), and reading
  keys back;
* :mod:`~casstore._format.digest`: content digests, plain and keyed BLAKE3;
* :mod:`~casstore._format.header`: the object header (formats 1 and 2, codec
  and key id bytes);
* :mod:`~casstore._format.compression`: raw and zstd bodies, object format 1;
* :mod:`~casstore._format.encrypted`: object format 2 (AES-256-GCM-SIV), and
  the entry points that pick format 1 or 2;
* :mod:`~casstore._format.claims`: claim formats 1 and 2;
* :mod:`~casstore._format.manifest`: the lifecycle manifest;
* :mod:`~casstore._format.trash`: gc's trash and lock keys.

A new format version is a change here and in docs/formats.md, golden-tested in
tests/test_formats.py, read alongside the old one. Nothing here does I/O.
"""
