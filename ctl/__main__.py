"""``python -m hft.ctl`` is ``hftctl``."""

from hft.ctl.cli import main

main(prog_name="hftctl")
