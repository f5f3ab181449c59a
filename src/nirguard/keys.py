"""Placeholder: being written."""


class SecretKey:  # placeholder
    pass


class KeyRing:  # placeholder
    pass
