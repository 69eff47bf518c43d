"""Compressed codebook memory bank (MBC): see issue 7."""
