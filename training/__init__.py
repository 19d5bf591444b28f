"""Training stage: MCMF + SLGM (model-spec.md) over aligned views of the store.

Imports ``store`` only (never ``flows`` or ``features``).
"""
