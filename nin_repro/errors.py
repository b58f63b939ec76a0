"""The project's errors. Each carries the exit code the CLI returns and a one-line message
that says what is wrong and what to do."""

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STALLED = 3
EXIT_BUSY = 4


class NinError(Exception):
    """Base class: the message is shown to the user as one line, without a traceback."""

    exit_code = EXIT_RUN_FAILED


class UsageError(NinError):
    """Bad option values or an unknown recipe."""

    exit_code = EXIT_BAD_INPUT


class DataError(NinError):
    """Missing, truncated or corrupt dataset files, or arrays that fail validation."""

    exit_code = EXIT_BAD_INPUT


class TrainingFailed(NinError):
    """A run that cannot produce a valid result (dead last layer, non-finite loss)."""

    exit_code = EXIT_RUN_FAILED


class SeedsStalled(NinError):
    """The table was written, but some seed stalled on every attempt (its row says which)."""

    exit_code = EXIT_STALLED


class RunFolderBusy(NinError):
    """Another process is training in the same run folder (its lock file is held)."""

    exit_code = EXIT_BUSY
