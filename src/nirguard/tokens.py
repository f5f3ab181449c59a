"""Placeholder: being written."""


class Tokeniser:  # placeholder
    pass
