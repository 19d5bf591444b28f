"""Datasets as emoflow reads and makes them: layout readers, the field grammar, ingest into a
validated clip table, and the seeded demo-data generator."""
