"""Fuzz targets (atheris) for the signaling parser, the envelope layer and the room hub.

Each ``fuzz_*.py`` module has a ``TestOneInput(data: bytes)`` that needs nothing but the project
(``tests/test_fuzz_targets.py`` runs it over the seed corpus in ``fuzz/corpus/<target>/``), and a
``main()`` that hands it to atheris: ``make fuzz`` (``FUZZ_SECONDS`` per target).
"""
