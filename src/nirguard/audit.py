"""Placeholder: being written."""


class AuditEvent:  # placeholder
    pass
