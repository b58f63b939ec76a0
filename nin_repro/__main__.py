from nin_repro.cli import entry

entry()
