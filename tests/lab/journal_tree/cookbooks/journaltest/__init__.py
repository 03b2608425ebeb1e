"""Cookbooks of the journal lab tests: real Ganeti changes, each journaled with an undo of its own."""
