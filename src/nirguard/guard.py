"""Placeholder: being written."""


class LookupGuard:  # placeholder
    pass
