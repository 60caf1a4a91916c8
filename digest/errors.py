"""One error tree for the whole package.

Every failure the command line reports is a ``DigestError``; ``cli.py`` maps it to an exit code
in one place. Errors carry the data needed to act on them (file, line, field), not just prose::

    DigestError                    exit 1 unless a subclass says otherwise
    ├── InputError                 exit 2: bad input the operator must fix (file, line, field)
    │   ├── ConfigError            digest.toml or DIGEST_* environment
    │   ├── StoryError             one story file
    │   │   └── BrokenStories      unreadable stories, with on_broken_story = "fail" (sources/gathering.py)
    │   ├── SubscriberError        one row of subscribers.csv
    │   ├── TemplateError          a template or a subject/preheader template
    │   └── NotAFile               a path to write is a device, pipe or socket (files.py)
    ├── HeaderValueError           a value cannot go in a header as it is (exit 2)
    │   └── HeaderInjectionError   ... because it carries CR, LF or NUL
    ├── MessageIntegrityError      serialised bytes do not parse back to the intended headers
    ├── DkimError                  a DKIM key or setting cannot be used (exit 2; compose/dkim.py)
    ├── DryRunFolderError          --out holds files digest did not write (exit 2; deliver/eml.py)
    ├── StateError                 the state database cannot be opened; its path named (state/)
    │   ├── StateQueryError        ... or cannot answer a query (an older database, read only)
    │   ├── StateConnectionLost    ... or lost its connection mid-transaction (state/connection.py)
    │   └── StoredCompositionError an issue's stored composition cannot be used (format, fingerprint; compose/pipeline.py)
    ├── SmtpSetupError             the relay cannot be used safely: TLS, STARTTLS, AUTH (deliver/transport.py)
    ├── AlreadyRunning             another process sends this issue or runs the scheduler (deliver/locks.py)
    ├── IssueStopped               a person held, paused or cancelled the issue (deliver/control.py)
    └── AwaitingApproval           no editor approved the issue as it composes now (deliver/approval.py)

tests/test_errors.py compares this drawing with the real subclasses: add a new error here.
"""

from __future__ import annotations

from pathlib import Path


class DigestError(Exception):
    """Root of every error digest raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(DigestError):
    """Bad input: names where it is so that a person can fix it."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field

    @property
    def where(self) -> str:
        """``file:line: field`` as far as it is known."""
        parts = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(InputError):
    """digest.toml or the DIGEST_* environment is wrong or incomplete."""


class StoryError(InputError):
    """A story file cannot be used."""


class SubscriberError(InputError):
    """A subscribers.csv row cannot be used."""


class TemplateError(InputError):
    """A template failed to load or render."""


class HeaderValueError(DigestError):
    """A value bound for a header cannot be written as it is; it is refused, never cleaned."""

    exit_code = 2
    reason = "cannot go in a header"

    def __init__(self, field: str, value: str, reason: str | None = None) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        super().__init__(f"{field} {reason or self.reason}: {shown!r}")
        self.field = field
        self.value = value


class HeaderInjectionError(HeaderValueError):
    """A value bound for a header holds a line break or NUL."""

    reason = "contains a line break or NUL and cannot go in a header"


class StateError(DigestError):
    """The state database cannot be opened (exit 1): its path is named."""


class StateQueryError(StateError):
    """The state database cannot answer a query: a table an older digest did not have, opened read
    only, or the database busy beyond its timeout. The driver's own error stays inside state/."""


class StoredCompositionError(StateError):
    """An issue's composition kept in the state database cannot be used: a format this digest does
    not know, a fingerprint that does not match its text, or a field missing or of the wrong kind.
    Copies are never rebuilt any other way for that issue: it stops, naming the issue."""


class MessageIntegrityError(DigestError):
    """A built message did not parse back to exactly the headers that were intended."""
