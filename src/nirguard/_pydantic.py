"""Placeholder: being written."""


class NIRStr:  # placeholder
    pass
