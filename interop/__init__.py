"""Doors into and out of the store for the field's formats: thuiar/MMSA feature pickles
(``mmsa``: the format; ``mmsa_export``; ``mmsa_import``; ``safe_pickle``: loading them without
running their code). See docs/interop.md."""

from interop.mmsa_export import MMSAExport, build_mmsa, export_mmsa
from interop.safe_pickle import RestrictedUnpickler, UnsafePickleError, load_untrusted

__all__ = [
    "MMSAExport",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "build_mmsa",
    "export_mmsa",
    "load_untrusted",
]
