"""The web pages of `dtmon serve` (pages.py) and their templates."""
