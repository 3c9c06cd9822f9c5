"""Readers per file format, with schema checks that fail as ``file:row: column: problem``."""
