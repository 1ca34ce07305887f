#!/usr/bin/env python
"""Django's command-line utility for Teleconsult."""

import os
import signal
import sys


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (from a supervisor, `docker stop` or `serve`) unwinds like Ctrl-C: open transactions roll
    # back and exit handlers run, so the embedded database's handle for this process is released.
    raise SystemExit(128 + signum)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from teleconsult.config import ConfigError

    try:
        # Load the settings first, so a configuration error is reported the same way for every command
        # (Django would otherwise swallow it for some and print a traceback for others).
        settings.INSTALLED_APPS  # noqa: B018
        execute_from_command_line(sys.argv)
    except ConfigError as error:
        # One line naming the variable (never its value), no traceback: the operator fixes the setting.
        print(f"Configuration error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
