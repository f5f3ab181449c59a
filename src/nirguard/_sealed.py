"""Package-internal: the immutable, unpicklable bases of every object that holds keys.

:class:`~nirguard.SecretKey`, :class:`~nirguard.KeyRing`, the pseudonymiser
and the tokeniser hold secret material or sub-keys derived from it. None of
them may leak through a pickle (the way keys reach caches, queues and crash
dumps), change after construction, or be duplicated by :mod:`copy`.

The material of a :class:`~nirguard.SecretKey` sits in :class:`KeyMaterial`'s
slot; outside :mod:`nirguard.keys` it is used only through
:func:`derive_subkey`, so that the material itself never leaves the key.

>>> import copy, pickle
>>> class Box(Sealed):
...     __slots__ = ("_secret",)
...     def __init__(self) -> None:
...         object.__setattr__(self, "_secret", b"s" * 32)
>>> box = Box()
>>> copy.deepcopy(box) is box
True
>>> pickle.dumps(box)
Traceback (most recent call last):
...
TypeError: Box objects cannot be pickled: they hold secret keys
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["KeyMaterial", "Sealed", "derive_subkey", "refuse_pickle"]


def refuse_pickle(obj: object) -> NoReturn:
    """Raise the :class:`TypeError` every key holder gives when it is pickled."""
    raise TypeError(f"{type(obj).__name__} objects cannot be pickled: they hold secret keys")


class Sealed:
    """Immutable holder of key material: no attribute changes, copies are the
    object itself, and pickling is refused. Subclasses set their slots with
    ``object.__setattr__``."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: object) -> Self:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        refuse_pickle(self)

    def __reduce__(self) -> NoReturn:
        refuse_pickle(self)

    def __getstate__(self) -> NoReturn:
        refuse_pickle(self)


class KeyMaterial(Sealed):
    """A sealed holder of secret key material (the base of :class:`~nirguard.SecretKey`,
    which checks and sets ``_material``)."""

    __slots__ = ("_material",)

    _material: bytes


def derive_subkey(key: KeyMaterial, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the key's material, no salt, with ``info``:
    ``length`` bytes. The pseudonymiser and the tokeniser derive their
    sub-keys here (``nirguard._purpose``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
        key._material
    )
