"""The `lite-csms` command line."""
