"""The test suite, a regular package so that ``tests.conftest`` and ``tests.reference_impls`` resolve to these
files even when an installed distribution ships a top-level ``tests`` package (confusables 1.2.0 does)."""
