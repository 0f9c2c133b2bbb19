"""Command-line tools, each a thin shell over library functions (no library module imports one)."""
