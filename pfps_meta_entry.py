"""The ``pfps-meta`` console script, light to import: it loads :mod:`pfps_meta.cli` (numpy, scipy,
pandas: most of a second) inside a guard, so that Ctrl-C pressed while those imports run ends with one
line and exit status 130, as Ctrl-C does once the command runs (``pfps_meta.cli.main``), instead of a
traceback through the import machinery.

It sits outside the ``pfps_meta`` package because importing any module of the package runs the
package's ``__init__``, which is where the heavy imports happen.
"""

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from pfps_meta.cli import run_process as run
    except KeyboardInterrupt:
        return _interrupted()
    try:
        return run()
    except KeyboardInterrupt:        # between run()'s own handler and here: still one line
        return _interrupted()


def _interrupted() -> int:
    try:
        print("pfps-meta: interrupted", file=sys.stderr)
    except (KeyboardInterrupt, OSError):
        pass
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
