"""One typed reader for every setting that comes from the environment.

A bad value (``DEBUG=maybe``, ``API_RATE_LIMIT=lots``) raises at start-up with the
variable's name, instead of surfacing later as a confusing runtime error.
"""

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from environs import Env

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env(eager=True)
env.read_env(BASE_DIR / ".env", recurse=False)


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (a URL handed to others)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
