import io

from jitctl.cli.progress import Spinner


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_spinner_on_a_terminal_shows_elapsed_then_clears():
    out = Tty()
    with Spinner("waiting for access to vm1", out) as spin:
        spin.update(0.2)
        spin.update(12.7)
    text = out.getvalue()
    assert (
        "\r| waiting for access to vm1... 0s " in text
        and "\r/ waiting for access to vm1... 12s " in text
    )
    assert text.endswith("\r")


def test_spinner_silent_off_a_terminal():
    out = io.StringIO()
    with Spinner("x", out) as spin:
        spin.update(3)
    assert out.getvalue() == ""
