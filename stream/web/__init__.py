"""``tweetwatch serve``: the dashboard and the JSON API over the store (see docs/api.md)."""
