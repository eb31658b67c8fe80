"""One client per upstream API over one shared request path (``base.ApiClient``).

``kotohomes`` and ``kato`` are the listing sources, ``chatkitty`` the destination; ``auth``
holds the credential objects the clients plug into the request path.
"""
