"""The site navigation, for every page that extends base.html (other apps' pages too).
Links to pages that an app does not provide yet are left out."""

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()

OPTIONAL_PAGES = [("Chat", "chat"), ("Try a Cargo", "try-cargo"), ("Exchange", "exchange")]


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


@register.simple_tag(takes_context=True)
def nav_links(context) -> list[dict]:
    request = context.get("request")
    links = [("Quickstart", _url("quickstart"))]
    links += [(label, _url(name)) for label, name in OPTIONAL_PAGES]
    links.append(("Pair", _url("pair") or "/pair"))
    if request is not None and request.user.is_authenticated:
        links.append(("Settings", _url("settings")))
    path = request.path if request is not None else ""
    return [
        {"label": label, "url": url, "current": path == url or path.startswith(f"{url}/")}
        for label, url in links
        if url
    ]
