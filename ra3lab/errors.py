"""The one error type users see for bad input: it names the field, the value and the fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid user input, raised before any work starts.

    The message reads ``<field> = <value> is invalid: <valid>`` so that a user can fix the
    exact key they passed on the command line or in a YAML file.
    """

    def __init__(self, field: str, value: object, valid: str):
        self.field, self.value, self.valid = field, value, valid
        super().__init__(f"{field} = {value!r} is invalid: {valid}")

    def __reduce__(self):
        """Pickle by the constructor's arguments, so the error crosses process and job boundaries."""
        return ConfigError, (self.field, self.value, self.valid)


def check(condition: bool, field: str, value: object, valid: str) -> None:
    """Raise :class:`ConfigError` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(field, value, valid)


def check_choice(field: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    check(value in choices, field, value, f"choose one of {', '.join(map(str, choices))}")


class RunError(RuntimeError):
    """A run that failed after it started: names the run directory, the step and the cause.

    Raised instead of the cause itself (chained as ``__cause__``), so that a ConfigError raised deep
    inside a study (``allowed = ...``) does not read as a field of the user's config.
    """

    def __init__(self, run: str, step: str, cause: str):
        self.run, self.step, self.cause = str(run), step, cause
        super().__init__(f"run {self.run} failed at {step}: {cause}")

    @classmethod
    def of(cls, run: object, step: str, error: BaseException) -> RunError:
        """The RunError for ``error`` raised at ``step`` of ``run``; ``cause`` reads ``<Type>: <message>``."""
        return cls(str(run), step, f"{type(error).__name__}: {error}")

    def __reduce__(self):
        return RunError, (self.run, self.step, self.cause)
