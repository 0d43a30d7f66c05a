"""Errors a user can act on. The entry point prints their message alone, never a stack trace."""


class DharmaError(Exception):
    """Base class: the message says what is wrong and which key, file or row it concerns."""


class ConfigError(DharmaError):
    """A configuration value is unknown, of the wrong type, or impossible; raised before any model loads."""


class DataError(DharmaError, ValueError):
    """Input data cannot be used; the message names the file and row."""


class ModelUnavailableError(DharmaError):
    """The model is neither a local folder nor in the Hugging Face cache, and the Hub cannot be reached."""


class TrainingError(DharmaError):
    """Training cannot go on safely (a non-finite loss or gradient); nothing was saved as finished."""


class ResourceError(DharmaError):
    """Not enough disk or memory for what the configuration asks; the message names the knobs that help."""


class DiskFullError(ResourceError):
    """The disk (or the file-size limit) ran out while a file was written; nothing partial counts as finished, so
    the same command resumes once there is room."""


class RunLockedError(DharmaError):
    """Another process is running into the same output_dir; the message names its pid and host."""


class Interrupted(DharmaError):
    """The run was stopped by a signal (SIGTERM, SIGINT); finished work is kept and the same command resumes it."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number

    @property
    def exit_status(self) -> int:
        """128 + the signal number: what a shell reports for a process stopped by that signal."""
        return 128 + self.signal_number
