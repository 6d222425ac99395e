"""Flower's configuration: `celery -A companion flower --conf=companion/flowerconfig.py`.

Flower shows every task's arguments and can revoke tasks and stop workers, so it always
asks for a login: FLOWER_BASIC_AUTH (settings.py checks its form). Without one it refuses
to start, unless DEBUG is on: then it makes a one-time password and prints it. Flower
runs this file itself (tornado's config file); each name it defines that matches one of
Flower's options sets that option, so the helpers' names start with an underscore.
(docs/security.md, item 6.)
"""

import secrets as _secrets
import sys as _sys

from django.conf import settings as _settings

if _settings.FLOWER_BASIC_AUTH:
    basic_auth = list(_settings.FLOWER_BASIC_AUTH)
elif _settings.DEBUG:
    _password = _secrets.token_urlsafe(12)
    basic_auth = [f"demo:{_password}"]
    print(f"Flower login (DJANGO_DEBUG only): demo / {_password}", file=_sys.stderr)
else:
    raise SystemExit(
        "FLOWER_BASIC_AUTH must be set (user:password, the password 12 characters or more) "
        "when DJANGO_DEBUG is off: Flower would otherwise be open to anyone who reaches it."
    )
