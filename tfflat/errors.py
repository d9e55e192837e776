"""The one exception type the library raises for bad input; the CLI prints it as one line, exit 2."""


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix."""


class IncompleteError(RuntimeError):
    """A run stopped without reaching its goal (e.g. no zero-error epoch); results were still saved.

    The CLI prints the message and exits with status 1.
    """
