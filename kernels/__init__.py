"""GPU kernels in Triton with PyTorch references: see issue 8.

This package shares its import name with Hugging Face's ``kernels``. transformers probes that
name when it is imported, so this module must stay cheap and side-effect free to import, and must
not define a ``__version__`` that looks like Hugging Face's (tests/test_packaging.py checks this).
"""
