"""One exception type for every problem a user can fix by changing their input, and how a CLI ends on one.

:func:`run_cli` gives the three CLIs one ending: an :class:`InputError` is one line on stderr and exit 2, Ctrl-C is
exit 130 and SIGTERM exit 143, each after the ``finally`` blocks and context managers have removed temporary files
and directories, and never with a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 128 + signal.SIGINT, 128 + signal.SIGTERM


class InputError(Exception):
    """Bad user input: a file, a field or a value that is not what was expected.

    CLIs print ``str(err)`` on one line and exit non-zero instead of showing a traceback,
    so the message must name the file/field and say what was expected.
    """


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as it does for Ctrl-C.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` in converters does not swallow it.
    """


def one_line(err: InputError) -> InputError:
    """``err`` as its worker raised it: torch's DataLoader re-raises a worker's exception as the same type with the
    worker's whole traceback as the message, whose last line is ``module.Type: original message``."""
    text = str(err)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return err
    _, sep, message = text.rstrip().splitlines()[-1].partition(": ")
    return type(err)(message) if sep else err


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Re-raise an ``InputError`` from a DataLoader worker with the worker's own one-line message."""
    try:
        yield
    except InputError as e:
        raise one_line(e) from None


def warn(message: str) -> None:
    """A one-line warning on stderr: the run goes on."""
    print(f"warning: {message}", file=sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def run_cli(body: Callable[[], int], *, prog: str, error_prefix: str, resume_hint: str = "") -> int:
    """Run a CLI's ``body`` and turn how it ends into an exit code (module docstring)."""
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers are the main thread's only
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return body()
    except InputError as e:
        print(f"{error_prefix}{e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated{resume_hint}", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
