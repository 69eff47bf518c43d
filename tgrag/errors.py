"""Errors users can act on. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class TGRAGError(Exception):
    """Base class: the CLI prints these as one line, never as a traceback."""


class StoreError(TGRAGError):
    pass


class StoreCorruptedError(StoreError):
    pass


class StoreLockedError(StoreError):
    pass


class StoreConfigMismatch(StoreError):
    pass


class InputError(TGRAGError):
    """Bad input that cannot be skipped (a bad argument, an unreadable file)."""


class UnknownBackendError(TGRAGError):
    pass
