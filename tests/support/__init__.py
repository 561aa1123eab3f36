"""Test scaffolding shared by the test modules, kept out of the runtime package: real daemon
processes (``daemons``), stand-ins for the CTP front (``ctp_emulator``) and real CTP structs
to feed them (``ctpdata``). Imported as ``support``: pytest's ``pythonpath`` puts tests/ on
the path."""
