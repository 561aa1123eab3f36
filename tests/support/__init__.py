"""Test scaffolding shared by the test modules, kept out of the runtime package: stand-ins for
the CTP front and real CTP structs to feed them (importable as ``support``: tests/ is on
the test run's path)."""
