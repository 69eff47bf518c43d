"""Evaluation harness: datasets, systems, metrics and protocols (issue 3 completes it)."""
