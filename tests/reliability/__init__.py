"""Helpers for the reliability tests: an independent model of what must be posted, and
`listingbot run` as a child process that can be killed at any moment."""
