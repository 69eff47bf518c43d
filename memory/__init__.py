"""Compressed codebook memory bank (MBC-style): vectors kept as product / residual quantiser
codes, codebooks learned online with dead-code reset, ADC search with exact re-rank, and an
attention read-out. Works on numpy arrays only; see docs/memory.md and issue 7."""

from .bank import CodebookMemory
from .config import BankStats, CodebookConfig
from .persist import BankFileError

__all__ = ["BankFileError", "BankStats", "CodebookConfig", "CodebookMemory"]
