"""The runtime: one :class:`~symgrad.runtime.base.Kernel` interface, one bound kernel."""
