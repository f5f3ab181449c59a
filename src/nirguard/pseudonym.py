"""Placeholder: being written."""


class Pseudonymiser:  # placeholder
    pass
