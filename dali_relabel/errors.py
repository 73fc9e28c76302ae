"""The errors dali_relabel raises for problems a user can act on.

Every one carries a message that names the file, key or argument concerned and says what to do. They
also derive from the builtin exception a caller would expect (``ValueError``, ``FileExistsError``,
``OSError``...), so ``except ValueError`` keeps working. The command line (``dali_relabel.cli``) prints
any of them as one line and exits with status 2; it maps :class:`InvalidArgument` to its own option
names, so library messages speak of parameters (``block_size``), never of command-line flags.
"""

from __future__ import annotations

import errno as errno_module


def _rebuild(cls, args: tuple, state: dict):
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class DaliRelabelError(Exception):
    """Base of the errors a user can act on (the message says how).

    Picklable with their attributes (errors raised in worker processes reach the parent intact).
    """

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class InvalidArgument(DaliRelabelError, ValueError):
    """An argument that cannot be honoured.

    Attributes:
        argument: the parameter's Python name (e.g. ``"block_size"``), which the CLI maps to its option.
        value: the value given.
        requirement: what the value must be, e.g. ``"must be >= 1"``.
    """

    def __init__(self, argument: str, value: object, requirement: str, *, where: str = ""):
        self.argument, self.value, self.requirement, self.where = argument, value, requirement, where
        super().__init__(self.describe(f"{argument}={value!r}"))

    def describe(self, shown: str, *, where: bool = True) -> str:
        """The message with the argument shown as ``shown`` (the CLI passes ``--block-size 0`` and no ``where``)."""
        return f"{self.where}: {shown}: {self.requirement}" if self.where and where else f"{shown}: {self.requirement}"


class UsageError(DaliRelabelError, ValueError):
    """Arguments that cannot be used together (the message says which to give)."""


class StoreNotFoundError(DaliRelabelError, FileNotFoundError):
    """No label store at the path or URL given."""


class StoreExistsError(DaliRelabelError, FileExistsError):
    """The destination of a new store is taken (by a store with other settings, or by other files)."""


class StoreMismatchError(StoreExistsError, ValueError):
    """A store exists where one was to be created or resumed, made with other settings (the message names them)."""


class StoreDamagedError(DaliRelabelError, ValueError):
    """A store object (metadata, chunk, block marker) is missing or cannot be decoded.

    Attributes:
        url: the store. object: the object's key inside the store (e.g. ``scores/c/3/0/0/0``), or None.
    """

    def __init__(self, message: str, *, url: str = "", object: str | None = None):
        self.url, self.object = url, object
        super().__init__(message)


class StoreIncompleteError(DaliRelabelError, ValueError):
    """Blocks needed by an operation are not written yet."""


class StoreWriteError(DaliRelabelError, OSError):
    """Writing failed for a reason outside the program (disk full, read-only file system, permissions).

    It is an ``OSError`` with the original ``errno``; the message names the path and what to do.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return _rebuild_write_error, (self.args[0], self.errno)


# errno -> (what happened, what to do)
_STORAGE_ADVICE = {
    errno_module.ENOSPC: ("no space left on device", "free space (or choose another location)"),
    errno_module.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno_module.EROFS: ("read-only file system", "choose a writable location"),
    errno_module.EACCES: ("permission denied", "make it writable for this user, or choose another location"),
    errno_module.EPERM: ("operation not permitted", "make it writable for this user, or choose another location"),
}


def storage_error(error: OSError, *, doing: str, path, then: str = "") -> StoreWriteError | OSError:
    """A :class:`StoreWriteError` naming ``path`` for a full, read-only or forbidden location, else ``error``.

    Args:
        error: the OSError raised by the write.
        doing: what was being done, e.g. ``"write block 3 of labels.zarr"``.
        path: the file or directory concerned (``error.filename`` is preferred when set).
        then: what happens on a retry, e.g. ``"blocks already written are kept: rerun to resume"``.
    """
    if isinstance(error, StoreWriteError) or error.errno not in _STORAGE_ADVICE:
        return error
    what, advice = _STORAGE_ADVICE[error.errno]
    where = error.filename if error.filename else path
    return StoreWriteError(f"cannot {doing}: {what} ({where}); {advice}" + (f"; {then}" if then else ""),
                           error.errno)


def _rebuild_write_error(message: str, errno: int | None) -> StoreWriteError:
    return StoreWriteError(message, errno)


class InvalidKeyError(DaliRelabelError, ValueError):
    """A key (image path relative to the dataset root) that is not a plain relative POSIX path."""


class BankError(DaliRelabelError, ValueError):
    """A serving bank is damaged, modified or unreadable. Attributes: path (the bank directory)."""

    def __init__(self, message: str, *, path=None):
        self.path = path
        super().__init__(message)


class BankNotFoundError(DaliRelabelError, FileNotFoundError):
    """No bank at the directory given."""


class ImageFolderError(DaliRelabelError, ValueError):
    """An image tree that cannot be listed as it is (e.g. a file name DALI's file lists cannot carry)."""


class ShardError(DaliRelabelError, ValueError):
    """Webdataset shards or their index files that cannot be read as they are: a damaged or truncated tar, a stale
    index, a sample key several store keys claim (the message names the tar, index or key)."""


class ShardsNotFoundError(DaliRelabelError, FileNotFoundError):
    """A shard specification that names no existing ``.tar`` file."""


class ShardWriteError(ShardError):
    """Images or an output directory that cannot be written as shards as asked (the message says what to do)."""


__all__ = ["BankError", "BankNotFoundError", "DaliRelabelError", "ImageFolderError", "InvalidArgument",
           "InvalidKeyError", "ShardError", "ShardWriteError", "ShardsNotFoundError", "StoreDamagedError",
           "StoreExistsError", "StoreIncompleteError", "StoreMismatchError", "StoreNotFoundError", "StoreWriteError",
           "UsageError", "storage_error"]
