"""Placeholder: being written."""


class QuotaPolicy:  # placeholder
    pass
