"""The care teams' web UI at /scheduled-messages/: server-rendered pages over the same
services as the admin, every read scoped to the user's organizations."""
