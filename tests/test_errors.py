"""The errors a command reports in one line, and the one place that prints the line and exits."""

from __future__ import annotations

import pytest

from uft.errors import Diverged, Exit, InputError, UFTError, one_line_errors


def ends(capsys, raised: BaseException, translate=None) -> tuple[int, str]:
    """The exit status and stderr of a command whose block raised ``raised``."""
    with pytest.raises(SystemExit) as exit_status, one_line_errors(translate):
        raise raised
    return exit_status.value.code, capsys.readouterr().err


def test_bad_input_and_a_diverged_run_are_uft_errors_but_a_diverged_run_is_no_bad_input():
    assert issubclass(InputError, UFTError) and issubclass(InputError, ValueError)
    assert issubclass(Diverged, UFTError) and not issubclass(Diverged, InputError)


@pytest.mark.parametrize("error", [InputError("no such file: x.txt"), Diverged("training diverged at step 3")])
def test_a_uft_error_is_one_line_and_status_2(capsys, error):
    assert ends(capsys, error) == (2, f"uft: error: {error}\n")


def test_a_command_reports_its_own_exceptions_and_lets_the_rest_through(capsys):
    def translate(err: BaseException) -> Exit | None:
        if isinstance(err, KeyboardInterrupt):
            return Exit("stopped by Ctrl-C", 130)
        return Exit.error(f"cannot read {err.filename}") if isinstance(err, OSError) else None

    assert ends(capsys, KeyboardInterrupt(), translate) == (130, "uft: stopped by Ctrl-C\n")
    missing = FileNotFoundError(2, "No such file", "a.txt")
    assert ends(capsys, missing, translate) == (2, "uft: error: cannot read a.txt\n")
    with pytest.raises(KeyError), one_line_errors(translate):
        raise KeyError("a bug: a traceback")
    with pytest.raises(SystemExit) as exit_status, one_line_errors(translate):
        raise SystemExit(0)  # --help
    assert exit_status.value.code == 0 and capsys.readouterr().err == ""
