"""listingbot: new and changed real-estate listings into team chat, exactly once."""

__version__ = "0.1.0"
