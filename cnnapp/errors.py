"""The library's own exception: a problem with what the user asked for.

Library code raises `CnnappError` with a message that names the argument and echoes the value
(``"--data: no such folder. Received: data=/tmp/nope"``); only the CLI turns it into a one-line
`click.ClickException`. Anything else that escapes is a bug and keeps its traceback.
"""


import re


class CnnappError(Exception):
    """Bad input from the user: the message is one line and says what was received."""


def tf_error_reason(error: Exception, limit: int = 160) -> str:
    """The informative line of a TensorFlow op error (not 'Graph execution error:' or node names)."""
    message = getattr(error, "message", None) or str(error)
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "<stack traces", "[[")):
            line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)   # eager op-wrapper prefix
            line = re.sub(r"\s*\[Op:.*$", "", line)                             # trailing op name
            return line[:limit]
    return type(error).__name__
