"""The PABX-neutral core: no sockets, no clocks, no files."""
