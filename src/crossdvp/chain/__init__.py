"""See the package docstring of crossdvp."""
