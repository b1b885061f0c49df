"""Inside the sandbox: a Python process that imports the heavy libraries first, then runs the one script the
host hands it, as ``python <script> <args>`` would (``prestart.py`` says why and when).

Started as ``python prestarted_python.py --ready-fd N torch monai`` in the sandbox a script would get (same
mounts, limits, environment and working folder), it imports the named modules, writes one byte to fd N and
closes it, then reads one line from stdin: the JSON
``{"argv": [script, *args]}``. It then takes /dev/null as stdin and runs the script as ``__main__`` with that
argv and the script's folder first on sys.path. An empty stdin (the host gave it up) or nothing for
IDLE_S seconds ends it. This file's own folder is never on sys.path: its neighbours must not shadow a library.
"""

import sys

del sys.path[0]  # this file's folder (medbuilder's tools: copy.py, files.py, ...) would shadow modules

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import runpy  # noqa: E402
import select  # noqa: E402

IDLE_S = 1800


def preload(names: list[str]) -> None:
    """Import the modules, then freeze what they made: the garbage collector no longer walks those objects, in
    the script's collections or in the one at exit (with torch and MONAI loaded that last one alone took
    1.4 s of a script's run; frozen it takes 0.1 s)."""
    for name in names:
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - the script meets the same problem when it imports the module
            pass
    gc.collect()
    gc.freeze()


def next_request() -> list[str] | None:
    ready, _, _ = select.select([sys.stdin], [], [], IDLE_S)
    line = sys.stdin.buffer.readline() if ready else b""
    if not line.strip():
        return None
    argv = json.loads(line)["argv"]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return [str(part) for part in argv]


def name_process(script: str) -> None:
    """The script's name as the process's (what top and ps -o comm show); its command line stays this file's."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, os.path.basename(script).encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def run(argv: list[str]) -> None:
    """The script as __main__; an uncaught error is reported from the script's first frame on, as python does."""
    script = argv[0]
    name_process(script)
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001
        trace = err.__traceback__
        while trace is not None and trace.tb_frame.f_code.co_filename != script:
            trace = trace.tb_next
        if trace is not None:
            err.with_traceback(trace)  # what python prints is the exception's own traceback
        sys.excepthook(type(err), err, err.__traceback__)
        sys.exit(1)


def options(args: list[str]) -> tuple[int, list[str]]:
    """(the ready pipe's fd, the modules to import)."""
    if args[:1] == ["--ready-fd"]:
        return int(args[1]), args[2:]
    return -1, args


def say_ready(fd: int) -> None:
    if fd >= 0:
        try:
            os.write(fd, b"1")
        except OSError:
            pass
        os.close(fd)


if __name__ == "__main__":
    ready_fd, modules = options(sys.argv[1:])
    preload(modules)
    say_ready(ready_fd)
    request = next_request()
    if request is None:
        os._exit(0)
    run(request)
