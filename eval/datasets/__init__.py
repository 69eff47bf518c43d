"""Dataset loaders for the evaluation harness."""
