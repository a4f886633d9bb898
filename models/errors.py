"""One exception type for every problem a user can fix by changing their input."""


class InputError(Exception):
    """Bad user input: a file, a field or a value that is not what was expected.

    CLIs print ``str(err)`` on one line and exit non-zero instead of showing a traceback,
    so the message must name the file/field and say what was expected.
    """
