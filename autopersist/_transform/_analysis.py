"""Facts about a module's functions, gathered before rewriting (see
``_analysis_reference``; a faster pass with the same results replaces this shim)."""

from autopersist._transform._analysis_reference import Entry, GatherEntriesVisitor

__all__ = ["Entry", "GatherEntriesVisitor"]
