"""Errors a user can act on. The entry point prints their message alone, never a stack trace."""


class DharmaError(Exception):
    """Base class: the message says what is wrong and which key, file or row it concerns."""


class ConfigError(DharmaError):
    """A configuration value is unknown, of the wrong type, or impossible; raised before any model loads."""


class DataError(DharmaError, ValueError):
    """Input data cannot be used; the message names the file and row."""


class ModelUnavailableError(DharmaError):
    """The model is neither a local folder nor in the Hugging Face cache, and the Hub cannot be reached."""
