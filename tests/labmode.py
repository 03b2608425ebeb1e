"""How a test session treats the lab, from COOKBOOK_LAB (see the `lab` fixture in tests/conftest.py)."""

BRINGS_UP = ("fresh", "require")
"""The COOKBOOK_LAB modes in which the session brings the lab up (and the last lab test takes it down)."""
