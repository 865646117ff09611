"""Deploying bundles to boards over SSH (fleet inventory, checksums, atomic switch, rollback).

Arrives with its own issue; the package exists so that ``spikeedge.deploy`` is importable."""
