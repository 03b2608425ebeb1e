"""The `cookbook` command: finds cookbooks, lists them, and runs one with locks, logs, audit and SAL.

Kept lean on import (no requests, pynetbox or cumin) so that listing and starting a cookbook are fast.
"""
