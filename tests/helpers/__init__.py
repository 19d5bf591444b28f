"""Helpers shared by test modules (plain functions and data builders; fixtures live in conftest.py)."""
